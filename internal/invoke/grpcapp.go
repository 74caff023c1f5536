package invoke

import (
	"bytes"
	"context"
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
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
)

// HeaderGRPCStatus carries, on an HTTP-shaped answer of a gRPC app, the
// gRPC status code the app returned, so that a gRPC caller gets that code
// back rather than one guessed from the HTTP status.
const HeaderGRPCStatus = "Tandem-Grpc-Status"

// defaultMaxMessage bounds the messages of unary calls to a gRPC app when no
// --max-body-size is set.
const defaultMaxMessage = 4 << 20

// IsGRPC reports whether a request or response header is that of a gRPC
// call: content type application/grpc, application/grpc+proto, ...
func IsGRPC(h http.Header) bool {
	ct := h.Get("Content-Type")
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// grpcApp is the channel to an app that is a gRPC server (--app-protocol
// grpc). A call shaped like HTTP (from the HTTP API or InvokeService) reaches
// it as AppCallback.OnInvoke; a gRPC call proxied with dapr-app-id reaches
// the app's own service unchanged, over h2c (see callApp).
type grpcApp struct {
	conn   *grpc.ClientConn
	client runtimev1pb.AppCallbackClient
	max    int
}

func newGRPCApp(addr string, maxMsg int, extra []grpc.DialOption) (*grpcApp, error) {
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg)),
	}, extra...)
	conn, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("gRPC channel to the app at %s: %w", addr, err)
	}
	return &grpcApp{conn: conn, client: runtimev1pb.NewAppCallbackClient(conn), max: maxMsg}, nil
}

// onInvoke calls the app's AppCallback.OnInvoke with the call and returns its
// answer as an HTTP response: 200 with the data and content type, or the
// app's gRPC error as the matching HTTP status with the status as JSON (as
// Dapr answers) and HeaderGRPCStatus set.
func (inv *Invoker) onInvoke(ctx context.Context, verb, method, rawQuery string, h http.Header, body io.ReadCloser) (*http.Response, *Error) {
	app := inv.grpcApp
	data, err := readAtMost(body, app.max)
	switch {
	case errors.Is(err, errTooLarge) || errors.Is(err, ErrBodyTooLarge):
		return nil, errorf(KindBodyTooLarge, inv.cfg.AppID, inv.cfg.AppAddress, err,
			"request to gRPC app %q: the body is over the limit of %d bytes of a unary OnInvoke call", inv.cfg.AppID, app.max)
	case err != nil:
		return nil, errorf(KindBadRequest, inv.cfg.AppID, inv.cfg.AppAddress, err, "reading the request body for gRPC app %q", inv.cfg.AppID)
	}
	m, err := url.PathUnescape(method)
	if err != nil { // ParseMethod has checked it; keep the escaped form
		m = method
	}
	req := &commonv1pb.InvokeRequest{
		Method:        m,
		ContentType:   h.Get("Content-Type"),
		HttpExtension: &commonv1pb.HTTPExtension{Verb: verbOf(verb), Querystring: rawQuery},
	}
	if len(data) > 0 {
		req.Data = &anypb.Any{Value: data}
	}
	ctx = metadata.NewOutgoingContext(ctx, MetadataFromHeader(h))
	var hdr metadata.MD
	resp, err := app.client.OnInvoke(ctx, req, grpc.Header(&hdr))
	if err != nil {
		st := status.Convert(err)
		if st.Code() == codes.Unavailable && app.conn.GetState() != connectivity.Ready {
			return nil, errorf(KindAppUnreachable, inv.cfg.AppID, inv.cfg.AppAddress, err,
				"gRPC app %q does not answer at %s", inv.cfg.AppID, inv.cfg.AppAddress)
		}
		inv.appReady.set()
		return grpcErrorResponse(st, hdr), nil
	}
	inv.appReady.set()
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

// grpcErrorResponse is a gRPC app's error as an HTTP answer.
func grpcErrorResponse(st *status.Status, hdr metadata.MD) *http.Response {
	b, err := protojson.Marshal(st.Proto())
	if err != nil {
		b = []byte(`{"code":` + strconv.Itoa(int(st.Code())) + `}`)
	}
	code := HTTPStatusFromCode(st.Code())
	h := HeaderFromMetadata(hdr)
	h.Set("Content-Type", "application/json")
	h.Set(HeaderGRPCStatus, strconv.Itoa(int(st.Code())))
	return &http.Response{
		StatusCode: code,
		Status:     strconv.Itoa(code) + " " + http.StatusText(code),
		Proto:      "HTTP/2.0", ProtoMajor: 2,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(b)),
		ContentLength: int64(len(b)),
	}
}

// HTTPStatusFromCode maps a gRPC code to the HTTP status Dapr uses for it.
func HTTPStatusFromCode(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return http.StatusRequestTimeout
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
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
func readAtMost(r io.ReadCloser, limit int) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, errTooLarge
	}
	return b, nil
}

func (a *grpcApp) close() {
	if a != nil {
		_ = a.conn.Close()
	}
}
