package invoke

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// The sidecar's own calls to its app (pub/sub deliveries, reading the
// app's subscriptions) are not invocations: they carry no caller headers
// and pass no access control. They reach the app as invocations do,
// though: within --app-max-concurrency, with the app token, traced, and
// refused without reaching it while it fails its health checks.

// AppTransport returns the channel to an HTTP app for the sidecar's own
// requests: each goes to the app's address, whatever the scheme and host
// of its URL. The slot of --app-max-concurrency it takes is held until its
// response body is closed. It is nil when there is no app or it is a gRPC
// app.
func (inv *Invoker) AppTransport() http.RoundTripper {
	a, ok := inv.app.(*httpApp)
	if !ok {
		return nil
	}
	return ownTransport{inv: inv, app: a}
}

type ownTransport struct {
	inv *Invoker
	app *httpApp
}

func (t ownTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	if err := t.inv.checkAppHealth(); err != nil {
		return nil, err
	}
	release, ierr := t.inv.acquireApp(req.Context())
	if ierr != nil {
		return nil, ierr
	}
	u := *req.URL
	u.Scheme, u.Host = t.app.scheme, t.app.addr
	out := req.Clone(req.Context())
	out.URL, out.Host = &u, ""
	if t.inv.appToken != nil {
		out.Header[wire.APIToken] = t.inv.appToken
	} else {
		delete(out.Header, wire.APIToken)
	}
	resp, err := t.app.rt.RoundTrip(out)
	if err != nil {
		release()
		return nil, errorf(wire.KindAppUnreachable, t.inv.cfg.AppID, t.app.addr, err, "app %q does not answer at %s://%s", t.inv.cfg.AppID, t.app.scheme, t.app.addr)
	}
	t.inv.appReady.set()
	resp.Body = &onClose{ReadCloser: resp.Body, fn: release}
	return resp, nil
}

// AppCallback returns the client of a gRPC app's AppCallback service for
// the sidecar's own calls, each within a slot of --app-max-concurrency; it
// is a runtimev1pb.AppCallbackAlphaClient too. It is nil when there is no
// app or it is an HTTP app.
func (inv *Invoker) AppCallback() runtimev1pb.AppCallbackClient {
	a, ok := inv.app.(*grpcApp)
	if !ok {
		return nil
	}
	conn := ownConn{inv: inv, app: a}
	return appCallback{runtimev1pb.NewAppCallbackClient(conn), runtimev1pb.NewAppCallbackAlphaClient(conn)}
}

// appCallback is a gRPC app's AppCallback and AppCallbackAlpha services.
type appCallback struct {
	runtimev1pb.AppCallbackClient
	runtimev1pb.AppCallbackAlphaClient
}

var apiTokenMD = strings.ToLower(wire.APIToken)

// ownConn is the gRPC app's connection, for unary calls.
type ownConn struct {
	inv *Invoker
	app *grpcApp
}

func (c ownConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if err := c.inv.checkAppHealth(); err != nil {
		return err
	}
	release, ierr := c.inv.acquireApp(ctx)
	if ierr != nil {
		return ierr
	}
	defer release()
	// The app sees its own token or none.
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	if c.inv.appToken != nil {
		md.Set(apiTokenMD, c.inv.appToken[0])
	} else {
		md.Delete(apiTokenMD)
	}
	ctx = metadata.NewOutgoingContext(ctx, md)
	err := c.app.conn.Invoke(ctx, method, args, reply, opts...)
	if status.Code(err) != codes.Unavailable {
		c.inv.appReady.set()
	}
	return err
}

func (c ownConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, fmt.Errorf("the sidecar's own channel to app %q makes unary calls only", c.inv.cfg.AppID)
}

var (
	_ http.RoundTripper        = ownTransport{}
	_ grpc.ClientConnInterface = ownConn{}
)
