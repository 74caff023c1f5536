package grpcapi

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-run/tandem/internal/apierr"
	"github.com/tandem-run/tandem/internal/invoke"
	"github.com/tandem-run/tandem/internal/invoke/wire"
	"github.com/tandem-run/tandem/pkg/resolver"
)

// proxy forwards a call of any service but Dapr's, made with dapr-app-id
// metadata, to that app's gRPC server through its sidecar. Messages pass as
// raw bytes, one gRPC frame each way as it comes, so every kind of RPC
// (unary, client, server and bidirectional streaming) works and nothing is
// decoded. The call travels the same internal hop as every invocation: an
// HTTP/2 stream whose body is the gRPC frames and whose trailers carry the
// status.
func (s *Server) proxy(_ any, ss grpc.ServerStream) error {
	ctx := ss.Context()
	fullMethod, _ := grpc.MethodFromServerStream(ss)
	md, _ := metadata.FromIncomingContext(ctx)
	ids := md.Get(strings.ToLower(wire.AppID))
	if len(ids) == 0 || ids[0] == "" {
		return status.Errorf(codes.Unimplemented,
			"unknown service or method %s: this port serves dapr.proto.runtime.v1.Dapr; to call an app's own gRPC service through the sidecar, send the metadata dapr-app-id: <app-id>", fullMethod)
	}
	target, err := resolver.ParseTarget(ids[0])
	if err != nil {
		return apierr.Malformed("invalid app id in dapr-app-id metadata: %v", err)
	}
	method, err := invoke.ParseMethod(strings.TrimPrefix(fullMethod, "/"))
	if err != nil {
		return apierr.Malformed("invalid gRPC method: %v", err)
	}

	h := invoke.HeaderFromMetadata(md)
	if err := invoke.CheckHeader(h, "metadata"); err != nil {
		return apierr.Malformed("%v", err)
	}
	h.Set("Content-Type", "application/grpc")
	if dl, ok := ctx.Deadline(); ok {
		h.Set("Grpc-Timeout", encodeTimeout(time.Until(dl)))
	}
	body := invoke.NewAhead()
	go pumpRequest(ss, body)
	resp, err := s.inv.Invoke(ctx, &invoke.Call{
		Target:        target,
		Method:        method,
		Verb:          http.MethodPost,
		Header:        h,
		Body:          body,
		ContentLength: -1,
		RemoteAddr:    remoteAddr(ctx),
		GRPCProxy:     true,
	})
	if err != nil {
		return apierr.Invoke(err)
	}
	defer resp.Body.Close()
	if !wire.IsGRPC(resp.Header) {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return status.Errorf(codes.Unknown, "app %q answered HTTP %d %q, not a gRPC response: %s",
			target.ID, resp.StatusCode, resp.Header.Get("Content-Type"), msg)
	}
	if resp.Header.Get("Grpc-Status") != "" {
		// Trailers-only: the app failed before sending anything.
		return grpcStatus(resp.Header, target.ID)
	}
	if err := ss.SendHeader(invoke.MetadataFromHeader(resp.Header)); err != nil {
		return err
	}
	if err := pumpResponse(ss, resp.Body, int(min(s.maxBody, 1<<31-1))); err != nil {
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		return status.Errorf(codes.Unavailable, "the stream from app %q broke: %v", target.ID, err)
	}
	ss.SetTrailer(invoke.MetadataFromHeader(resp.Trailer))
	return grpcStatus(resp.Trailer, target.ID)
}

// pumpRequest copies the client's messages into body as gRPC frames.
func pumpRequest(ss grpc.ServerStream, body *invoke.Ahead) {
	for {
		var f frame
		if err := ss.RecvMsg(&f); err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			body.CloseWithError(err)
			return
		}
		buf := make([]byte, 5+len(f.b))
		binary.BigEndian.PutUint32(buf[1:5], uint32(len(f.b)))
		copy(buf[5:], f.b)
		if !body.Put(buf) {
			return // the call is over; RecvMsg ends with the stream
		}
	}
}

// pumpResponse sends each gRPC frame of body to the client as a message.
func pumpResponse(ss grpc.ServerStream, body io.Reader, maxMsg int) error {
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(body, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if hdr[0]&1 != 0 {
			return errors.New("the app sent a compressed message, though the sidecar does not offer compression")
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if int64(n) > int64(maxMsg) {
			return fmt.Errorf("a message of %d bytes is over the limit of %d (--max-body-size)", n, maxMsg)
		}
		f := &frame{b: make([]byte, n)}
		if _, err := io.ReadFull(body, f.b); err != nil {
			return fmt.Errorf("message cut short: %w", err)
		}
		if err := ss.SendMsg(f); err != nil {
			return err
		}
	}
}

// grpcStatus reads the status an app sent in h (its trailers, or headers of
// a trailers-only answer).
func grpcStatus(h http.Header, appID string) error {
	c := h.Get("Grpc-Status")
	if c == "" {
		return status.Errorf(codes.Internal, "the stream from app %q ended without a gRPC status", appID)
	}
	code, err := strconv.ParseUint(c, 10, 32)
	if err != nil {
		return status.Errorf(codes.Internal, "app %q sent grpc-status %q, which is not a number", appID, c)
	}
	if bin := h.Get("Grpc-Status-Details-Bin"); bin != "" {
		if b, err := decodeBin(bin); err == nil {
			var st spb.Status
			if proto.Unmarshal(b, &st) == nil && st.GetCode() == int32(code) {
				return status.ErrorProto(&st)
			}
		}
	}
	if code == 0 {
		return nil
	}
	msg := h.Get("Grpc-Message")
	if m, err := url.PathUnescape(msg); err == nil {
		msg = m
	}
	return status.Error(codes.Code(code), msg)
}

// decodeBin decodes a -bin metadata value, padded or not.
func decodeBin(v string) ([]byte, error) {
	if len(v)%4 == 0 {
		return base64.StdEncoding.DecodeString(v)
	}
	return base64.RawStdEncoding.DecodeString(v)
}

// encodeTimeout renders d as a grpc-timeout value: at most 8 digits and a unit.
func encodeTimeout(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	for _, u := range []struct {
		d time.Duration
		s string
	}{{time.Nanosecond, "n"}, {time.Microsecond, "u"}, {time.Millisecond, "m"}, {time.Second, "S"}, {time.Minute, "M"}, {time.Hour, "H"}} {
		if n := (d + u.d - 1) / u.d; n <= 99999999 {
			return strconv.FormatInt(int64(n), 10) + u.s
		}
	}
	return "99999999H"
}
