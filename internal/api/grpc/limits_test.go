package grpcapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// The bound in all: past it a call ends at once with ResourceExhausted; a
// call that ends, however, gives its place back. The Admit check comes
// first and its answer is the call's.
func TestAdmission(t *testing.T) {
	var refuse bool
	a := newAdmission(func(info *tap.Info) error {
		if refuse {
			return status.Error(codes.Unauthenticated, "no")
		}
		return nil
	}, 2)
	var cancels []context.CancelFunc
	admit := func() error {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		_, err := a.tap(ctx, &tap.Info{FullMethodName: "/x.Y/Z", Header: metadata.MD{}})
		return err
	}
	for i := range 2 {
		if err := admit(); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	err := admit()
	wantStatus(t, err, codes.ResourceExhausted, "ERR_TOO_MANY_REQUESTS", "2 calls in flight", "--grpc-max-streams")
	refuse = true
	if err := admit(); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a call Admit refuses: %v", err)
	}
	refuse = false
	cancels[0]() // a call ends
	deadline := time.Now().Add(10 * time.Second)
	for a.inFlight.Load() > 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := admit(); err != nil {
		t.Errorf("a call after one ended: %v", err)
	}
	if err := admit(); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("a call past the bound again: %v", err)
	}
	for _, c := range cancels {
		c()
	}
}
