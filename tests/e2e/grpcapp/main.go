// Command grpcapp is the gRPC app the end-to-end tests invoke through
// sidecars started with --app-protocol grpc. It listens on $APP_PORT and
// serves, on one gRPC server:
//
//   - AppCallback (Dapr's app service), built with the Dapr Go SDK:
//     method "echo" answers {"data","contentType","verb","query","caller"};
//     method "fail" answers NotFound with the message "no such thing".
//   - grpc.testing.TestService, for calls proxied with dapr-app-id:
//     UnaryCall echoes its payload (a payload "fail" answers
//     FailedPrecondition), sends header "x-app-header" and trailer
//     "x-app-trailer"; StreamingInputCall sums the sizes it received;
//     StreamingOutputCall sends one message per response parameter, of that
//     size; FullDuplexCall answers each message with its payload reversed.
//
// With $RECORD_PORT set it is a subscriber instead, written on the raw
// proto (runtimev1pb.AppCallbackServer, no SDK), in place of the SDK's
// AppCallback: see topics.go.
package main

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"os"
	"slices"

	"github.com/dapr/go-sdk/service/common"
	daprd "github.com/dapr/go-sdk/service/grpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func main() {
	lis, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("APP_PORT"))
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, testService{})
	if port := os.Getenv("RECORD_PORT"); port != "" {
		serveTopics(srv, port)
		log.Fatal(srv.Serve(lis))
	}
	s := daprd.NewServiceWithGrpcServer(lis, srv)
	must(s.AddServiceInvocationHandler("echo", echo))
	must(s.AddServiceInvocationHandler("fail", func(context.Context, *common.InvocationEvent) (*common.Content, error) {
		return nil, status.Error(codes.NotFound, "no such thing")
	}))
	log.Fatal(s.Start())
}

func echo(ctx context.Context, in *common.InvocationEvent) (*common.Content, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	b, err := json.Marshal(map[string]any{
		"data":        string(in.Data),
		"contentType": in.ContentType,
		"verb":        in.Verb,
		"query":       in.QueryString,
		"caller":      md.Get("dapr-caller-app-id"),
		"traceparent": md.Get("traceparent"),
	})
	if err != nil {
		return nil, err
	}
	return &common.Content{Data: b, ContentType: "application/json"}, nil
}

type testService struct {
	testpb.UnimplementedTestServiceServer
}

func (testService) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if string(in.GetPayload().GetBody()) == "fail" {
		return nil, status.Error(codes.FailedPrecondition, "asked to fail")
	}
	md, _ := metadata.FromIncomingContext(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-app-header", "h", "x-seen-app-id", first(md.Get("dapr-caller-app-id")),
		"x-seen-traceparent", first(md.Get("traceparent")), "x-seen-bearer-subject", first(md.Get("dapr-bearer-subject"))))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-app-trailer", "t"))
	return &testpb.SimpleResponse{Payload: in.GetPayload()}, nil
}

func (testService) StreamingInputCall(st grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	var sum int32
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return st.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: sum})
		}
		if err != nil {
			return err
		}
		sum += int32(len(m.GetPayload().GetBody()))
	}
}

func (testService) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, st grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for _, p := range in.GetResponseParameters() {
		body := make([]byte, p.GetSize())
		for i := range body {
			body[i] = byte('a' + i%26)
		}
		if err := st.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
	return nil
}

func (testService) FullDuplexCall(st grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		b := slices.Clone(m.GetPayload().GetBody())
		slices.Reverse(b)
		if err := st.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: b}}); err != nil {
			return err
		}
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
