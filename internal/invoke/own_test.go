package invoke

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// TestAppTransport: the sidecar's own requests reach its HTTP app at its
// address whatever their URL's host, with the app's token and never
// another, within --app-max-concurrency (a slot is held until the answer
// is closed), and not while the app fails its health checks.
func TestAppTransport(t *testing.T) {
	got := make(chan *http.Request, 10)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r }))
	defer app.Close()
	inv, err := New(Config{AppID: "self", AppAddress: app.Listener.Addr().String(), AppToken: "s3cret", AppMaxConcurrency: 1}, staticResolver{})
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	if inv.AppCallback() != nil {
		t.Error("an HTTP app has an AppCallback client")
	}
	rt := inv.AppTransport()
	post := func(ctx context.Context) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://placeholder/orders?x=1", strings.NewReader("{}"))
		req.Header.Set(wire.APIToken, "forged")
		return rt.RoundTrip(req)
	}
	first, err := post(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.URL.RequestURI() != "/orders?x=1" || r.Host != app.Listener.Addr().String() || r.Header.Get(wire.APIToken) != "s3cret" {
		t.Errorf("the app got %s %s host %s token %q", r.Method, r.URL, r.Host, r.Header.Get(wire.APIToken))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := post(ctx); err == nil || !strings.Contains(err.Error(), "--app-max-concurrency of 1") {
		t.Errorf("a request while the slot is held: %v", err)
	}
	first.Body.Close()
	second, err := post(context.Background())
	if err != nil {
		t.Fatalf("after the first answer was closed: %v", err)
	}
	second.Body.Close()

	sick, err := New(Config{AppID: "self", AppAddress: app.Listener.Addr().String(),
		Health: &HealthCheck{Path: "/ready", Interval: time.Hour, Timeout: time.Second, Threshold: 1}}, staticResolver{})
	if err != nil {
		t.Fatal(err)
	}
	defer sick.Close()
	req, _ := http.NewRequest(http.MethodGet, "http://placeholder/dapr/subscribe", nil)
	var ie *Error
	if _, err := sick.AppTransport().RoundTrip(req); !errors.As(err, &ie) || ie.Kind != wire.KindAppUnhealthy {
		t.Errorf("a request to an app not yet healthy: %v", err)
	}
	if len(got) != 1 {
		t.Errorf("%d requests reached the app, want the second only", len(got))
	}

	grpcApp, err := New(Config{AppID: "self", AppAddress: app.Listener.Addr().String(), AppProtocol: "grpc"}, staticResolver{})
	if err != nil {
		t.Fatal(err)
	}
	defer grpcApp.Close()
	if grpcApp.AppTransport() != nil || grpcApp.AppCallback() == nil {
		t.Error("a gRPC app: want an AppCallback client and no HTTP transport")
	}
}
