package grpcapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/tandem-run/tandem/internal/api"
	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/internal/invoke"
	"github.com/tandem-run/tandem/internal/invoke/wire"
	"github.com/tandem-run/tandem/pkg/resolver"
)

// Metadata keys of InvokeService answers, as Dapr sets them.
const (
	mdHTTPStatus = "dapr-http-status"
	headerPrefix = "dapr-" // for HTTP headers gRPC metadata cannot carry as they are
)

// InvokeService invokes a method of another app (or of this one). The call
// reaches the target app as HTTP (verb and query string from
// http_extension) or, for a gRPC app, as AppCallback.OnInvoke. The app's
// HTTP status is the dapr-http-status header metadata; a non-2xx status is a
// gRPC error, as Dapr's SDKs expect.
func (s *Server) InvokeService(ctx context.Context, in *runtimev1pb.InvokeServiceRequest) (*commonv1pb.InvokeResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	call, err := invokeCall(in, md)
	if err != nil {
		return nil, err
	}
	call.RemoteAddr = remoteAddr(ctx)
	target := call.Target
	resp, err := s.inv.Invoke(ctx, call)
	if ae := (*invoke.AppError)(nil); errors.As(err, &ae) {
		// A gRPC app's status, as it returned it.
		out := answerMetadata(ae.Header)
		out.Set(mdHTTPStatus, strconv.Itoa(ae.HTTPStatus()))
		_ = grpc.SetHeader(ctx, out)
		return nil, ae.Status.Err()
	}
	if err != nil {
		return nil, apierr.Invoke(err)
	}
	defer resp.Body.Close()
	body, err := api.ReadAll(io.LimitReader(resp.Body, s.maxBody+1), resp.ContentLength)
	if err != nil {
		return nil, apierr.Invoke(fmt.Errorf("reading the answer of app %q: %w", target.ID, err))
	}
	if int64(len(body)) > s.maxBody {
		return nil, apierr.New(apierr.CodeDirectInvoke, http.StatusInternalServerError, codes.ResourceExhausted,
			"the answer of app %q is over %d bytes, and InvokeService holds whole messages: raise --max-body-size, or stream it with the HTTP API or a proxied gRPC call", target.ID, s.maxBody)
	}

	out := answerMetadata(resp.Header)
	out.Set(mdHTTPStatus, strconv.Itoa(resp.StatusCode))
	_ = grpc.SetHeader(ctx, out)

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, httpStatusError(target.ID, resp.StatusCode, body)
	}
	return &commonv1pb.InvokeResponse{
		Data:        &anypb.Any{Value: body},
		ContentType: resp.Header.Get("Content-Type"),
	}, nil
}

// invokeCall checks an InvokeServiceRequest and its metadata and turns them
// into the call to make. Everything that becomes part of the request to the
// app is checked here, naming the field: method, query, verb, metadata.
func invokeCall(in *runtimev1pb.InvokeServiceRequest, md metadata.MD) (*invoke.Call, error) {
	msg := in.GetMessage()
	if in.GetId() == "" {
		return nil, apierr.New(apierr.CodeDirectInvoke, http.StatusNotFound, codes.InvalidArgument,
			"no app id in the request: set InvokeServiceRequest.id to the id of the app to call")
	}
	target, err := resolver.ParseTarget(in.GetId())
	if err != nil {
		return nil, apierr.Malformed("invalid app id: %v", err)
	}
	if msg == nil || msg.GetMethod() == "" {
		return nil, apierr.Malformed("no method in the request: set InvokeServiceRequest.message.method")
	}
	// A query string in the method (the Dapr JS SDK sends "echo?x=1") is
	// the call's query, as daprd takes it, before http_extension's.
	name, query, _ := strings.Cut(msg.GetMethod(), "?")
	method, err := invoke.ParseMethod(escapeMethod(name))
	if err != nil {
		return nil, apierr.Malformed("invalid method path: %v", err)
	}
	if err := invoke.CheckQuery(query); err != nil {
		return nil, apierr.Malformed("invalid message.method: %v", err)
	}
	if q := msg.GetHttpExtension().GetQuerystring(); q != "" {
		if err := invoke.CheckQuery(q); err != nil {
			return nil, apierr.Malformed("invalid message.http_extension.querystring: %v", err)
		}
		if query != "" {
			query += "&"
		}
		query += q
	}
	verb := http.MethodPost
	if v := msg.GetHttpExtension().GetVerb(); v != commonv1pb.HTTPExtension_NONE {
		if _, known := commonv1pb.HTTPExtension_Verb_name[int32(v)]; !known {
			return nil, apierr.Malformed("message.http_extension.verb %d is not a known verb", v)
		}
		verb = v.String()
	}
	h := invoke.HeaderFromMetadata(md)
	delete(h, wire.AppID)
	if err := invoke.CheckHeader(h, "metadata"); err != nil {
		return nil, apierr.Malformed("%v", err)
	}
	if ct := msg.GetContentType(); ct != "" {
		h.Set("Content-Type", ct)
		if err := invoke.CheckHeader(http.Header{"Content-Type": {ct}}, "message.content_type"); err != nil {
			return nil, apierr.Malformed("%v", err)
		}
	}
	data := msg.GetData().GetValue()
	call := &invoke.Call{
		Target:        target,
		Method:        method,
		Verb:          verb,
		RawQuery:      query,
		Header:        h,
		ContentLength: int64(len(data)),
	}
	if len(data) > 0 {
		call.Body = io.NopCloser(bytes.NewReader(data))
	}
	return call, nil
}

// httpStatusError is a non-2xx answer of an HTTP app as a gRPC error: the
// code Dapr maps the status to, and an ErrorInfo with the status and the
// start of the body (Dapr's metadata keys http.code and http.error_message).
func httpStatusError(appID string, code int, body []byte) error {
	text := http.StatusText(code)
	st := status.New(apierr.CodeFromHTTPStatus(code), fmt.Sprintf("app %q answered HTTP %d %s", appID, code, text))
	detail := string(body)
	if len(detail) > 63 { // Dapr's limit on the metadata value
		detail = detail[:63]
	}
	if d, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason:   text,
		Domain:   apierr.Domain,
		Metadata: map[string]string{"http.code": strconv.Itoa(code), "http.error_message": detail},
	}); err == nil {
		st = d
	}
	return st.Err()
}

// answerMetadata turns an app's response headers into header metadata.
// Headers that gRPC reserves (Content-Type, Content-Length, ...) are kept
// under a dapr- prefix, as Dapr does.
func answerMetadata(h http.Header) metadata.MD {
	md := invoke.MetadataFromHeader(h)
	for _, k := range []string{"Content-Type", "Content-Length"} {
		if v := h.Get(k); v != "" {
			md.Set(headerPrefix+strings.ToLower(k), v)
		}
	}
	return md
}

// escapeMethod turns InvokeRequest.method, a plain string, into the escaped
// path form ParseMethod checks: each segment is escaped, so a "?" or "%" in a
// name stays part of the name and "." and ".." segments are still refused.
func escapeMethod(m string) string {
	m = strings.TrimPrefix(m, "/")
	segs := strings.Split(m, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

func remoteAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}
