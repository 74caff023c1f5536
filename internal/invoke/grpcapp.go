package invoke

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// defaultMaxMessage bounds the messages of unary calls to a gRPC app when no
// --max-body-size is set.
const defaultMaxMessage = 4 << 20

// grpcApp is the channel to an app that is a gRPC server (--app-protocol
// grpc, or grpcs: over TLS). A call shaped like HTTP (from the HTTP API or InvokeService) reaches
// it as AppCallback.OnInvoke; a gRPC call proxied with dapr-app-id reaches
// the app's own service unchanged, over h2c.
type grpcApp struct {
	appID, addr string
	conn        *grpc.ClientConn
	client      runtimev1pb.AppCallbackClient
	max         int
	raw         *httpApp // h2c, for proxied gRPC calls
}

func newGRPCApp(cfg Config, raw *httpApp) (*grpcApp, error) {
	maxMsg := defaultMaxMessage
	if cfg.MaxBodySize > 0 {
		maxMsg = int(min(cfg.MaxBodySize, 1<<31-1))
	}
	creds := insecure.NewCredentials()
	if cfg.AppProtocol == "grpcs" {
		// As https: the app's certificate is not verified (loopback).
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // loopback app channel
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg)),
	}, cfg.AppDialOptions...)
	conn, err := grpc.NewClient("passthrough:///"+cfg.AppAddress, opts...)
	if err != nil {
		return nil, fmt.Errorf("gRPC channel to the app at %s: %w", cfg.AppAddress, err)
	}
	return &grpcApp{appID: cfg.AppID, addr: cfg.AppAddress, conn: conn, client: runtimev1pb.NewAppCallbackClient(conn), max: maxMsg, raw: raw}, nil
}

func (a *grpcApp) call(ctx context.Context, c *Call) (*http.Response, error) {
	if c.GRPCProxy {
		return a.raw.call(ctx, c)
	}
	return a.onInvoke(ctx, c)
}

func (a *grpcApp) close() {
	_ = a.conn.Close()
	a.raw.close()
}

// onInvoke calls the app's AppCallback.OnInvoke with the call and returns its
// answer as an HTTP response (200 with the data and content type), or the
// app's error status as an *AppError.
func (a *grpcApp) onInvoke(ctx context.Context, c *Call) (*http.Response, error) {
	data, err := readAtMost(c.Body, a.max)
	switch {
	case errors.Is(err, errTooLarge) || errors.Is(err, ErrBodyTooLarge):
		return nil, errorf(wire.KindBodyTooLarge, a.appID, a.addr, err,
			"request to gRPC app %q: the body is over the limit of %d bytes of a unary OnInvoke call", a.appID, a.max)
	case err != nil:
		return nil, errorf(wire.KindBadRequest, a.appID, a.addr, err, "reading the request body for gRPC app %q", a.appID)
	}
	m, err := url.PathUnescape(c.Method)
	if err != nil { // ParseMethod has checked it; keep the escaped form
		m = c.Method
	}
	req := &commonv1pb.InvokeRequest{
		Method:        m,
		ContentType:   c.Header.Get("Content-Type"),
		HttpExtension: &commonv1pb.HTTPExtension{Verb: verbOf(c.Verb), Querystring: c.RawQuery},
	}
	if len(data) > 0 {
		req.Data = &anypb.Any{Value: data}
	}
	ctx = metadata.NewOutgoingContext(ctx, MetadataFromHeader(c.Header))
	var hdr metadata.MD
	resp, err := a.client.OnInvoke(ctx, req, grpc.Header(&hdr))
	if err != nil {
		st := status.Convert(err)
		if st.Code() == codes.Unavailable && a.conn.GetState() != connectivity.Ready {
			return nil, errorf(wire.KindAppUnreachable, a.appID, a.addr, err, "gRPC app %q does not answer at %s", a.appID, a.addr)
		}
		return nil, &AppError{AppID: a.appID, Status: st, Header: HeaderFromMetadata(hdr)}
	}
	out := &http.Response{
		StatusCode: http.StatusOK,
		Status:     "200 OK",
		Proto:      "HTTP/2.0", ProtoMajor: 2,
		Header: HeaderFromMetadata(hdr),
	}
	if ct := resp.GetContentType(); ct != "" {
		out.Header.Set("Content-Type", ct)
	}
	v := resp.GetData().GetValue()
	out.Body = io.NopCloser(bytes.NewReader(v))
	out.ContentLength = int64(len(v))
	return out, nil
}

// AppError is a gRPC app's error status, as the app returned it from
// AppCallback.OnInvoke: a value until an adapter shows it, as Dapr does (on
// the HTTP API the matching HTTP status with the status as JSON,
// apierr.WriteAppStatus; on the gRPC API the status itself). Between
// sidecars it travels in that HTTP form with wire.GRPCStatus set, as the
// previous release sends it (writeAppError, appError).
type AppError struct {
	AppID  string
	Status *status.Status
	Header http.Header // the app's header metadata
}

func (e *AppError) Error() string {
	return fmt.Sprintf("app %q answered %s: %s", e.AppID, e.Status.Code(), e.Status.Message())
}

// HTTPStatus is the HTTP status Dapr shows the app's status as.
func (e *AppError) HTTPStatus() int { return apierr.HTTPStatusFromCode(e.Status.Code()) }

// writeAppError answers a peer sidecar with a gRPC app's error status in
// the form the previous release sends, which peers of either version read
// (appError): the app's header metadata, wire.GRPCStatus, the HTTP status of
// the code and the status as JSON.
func writeAppError(w http.ResponseWriter, e *AppError) {
	b, err := protojson.Marshal(e.Status.Proto())
	if err != nil {
		b = []byte(`{"code":` + strconv.Itoa(int(e.Status.Code())) + `}`)
	}
	h := w.Header()
	h.Set(wire.GRPCStatus, strconv.Itoa(int(e.Status.Code())))
	copyHeader(h, e.Header)
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(e.HTTPStatus())
	_, _ = w.Write(b)
}

// appError reads the HTTP form of a gRPC app's status from a peer.
func appError(resp *http.Response, appID string) *AppError {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	h := resp.Header
	var st spb.Status
	if err := protojson.Unmarshal(b, &st); err != nil {
		n, _ := strconv.Atoi(h.Get(wire.GRPCStatus))
		return &AppError{AppID: appID, Status: status.Newf(codes.Code(n), "app %q failed, and its status could not be read: %v", appID, err)}
	}
	removeHopByHop(h)
	for _, k := range []string{wire.GRPCStatus, "Content-Type", "Content-Length"} {
		delete(h, k)
	}
	return &AppError{AppID: appID, Status: status.FromProto(&st), Header: h}
}

func verbOf(verb string) commonv1pb.HTTPExtension_Verb {
	if v, ok := commonv1pb.HTTPExtension_Verb_value[verb]; ok {
		return commonv1pb.HTTPExtension_Verb(v)
	}
	return commonv1pb.HTTPExtension_NONE
}

// reservedMD are header names that gRPC owns or that describe the HTTP
// message rather than the call; they never become metadata.
var reservedMD = map[string]bool{
	"content-type": true, "content-length": true, "te": true, "user-agent": true,
	"host": true, "accept-encoding": true, "connection": true, "transfer-encoding": true,
	"grpc-timeout": true, "grpc-encoding": true, "grpc-accept-encoding": true,
	"grpc-status": true, "grpc-message": true, "grpc-status-details-bin": true,
}

// MetadataFromHeader turns HTTP headers into gRPC metadata, leaving out what
// gRPC owns (content-type, te, grpc-*, ...). Binary (-bin) values, base64 on
// the wire, are decoded; one that does not decode is left out.
func MetadataFromHeader(h http.Header) metadata.MD {
	md := make(metadata.MD, len(h))
	for k, vv := range h {
		lk := strings.ToLower(k)
		if reservedMD[lk] || strings.HasPrefix(lk, ":") {
			continue
		}
		if strings.HasSuffix(lk, "-bin") {
			for _, v := range vv {
				if b, err := decodeBin(v); err == nil {
					md[lk] = append(md[lk], string(b))
				}
			}
			continue
		}
		md[lk] = append(md[lk], vv...)
	}
	return md
}

// HeaderFromMetadata turns gRPC metadata into HTTP headers, leaving out what
// gRPC owns. Binary (-bin) values are base64-encoded, as gRPC sends them.
func HeaderFromMetadata(md metadata.MD) http.Header {
	h := make(http.Header, len(md))
	for k, vv := range md {
		if reservedMD[k] || strings.HasPrefix(k, ":") {
			continue
		}
		if strings.HasSuffix(k, "-bin") {
			enc := make([]string, len(vv))
			for i, v := range vv {
				enc[i] = base64.RawStdEncoding.EncodeToString([]byte(v))
			}
			vv = enc
		}
		h[http.CanonicalHeaderKey(k)] = vv
	}
	return h
}

// decodeBin decodes a -bin metadata value, padded or not.
func decodeBin(v string) ([]byte, error) {
	if len(v)%4 == 0 {
		return base64.StdEncoding.DecodeString(v)
	}
	return base64.RawStdEncoding.DecodeString(v)
}

var errTooLarge = errors.New("message too large")

// readAtMost reads all of r, failing when it holds more than limit bytes.
func readAtMost(r io.Reader, limit int) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	// The body is withBody's to close.
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, errTooLarge
	}
	return b, nil
}
