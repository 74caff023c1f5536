package telemetry

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// TestDeliverySpan: a delivery's span is a child of the publisher's span
// whose traceparent the event carries, and the call to the app it makes is
// its child; an event without a valid one starts a new trace; with
// tracing off nothing is recorded.
func TestDeliverySpan(t *testing.T) {
	tr, rec := recording(t, "checkout")
	var got string
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Get("Traceparent") }))
	defer app.Close()
	client := &http.Client{Transport: tr.AppClient("checkout")(http.DefaultTransport)}

	ctx, end := tr.StartDelivery(context.Background(), "pubsub", "orders", parent, "k=v")
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, app.URL+"/orders", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	end("RETRY", errors.New("the app answered RETRY"))

	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want the delivery's and the call's", len(spans))
	}
	call, delivery := spans[0], spans[1]
	if delivery.Name() != "pubsub/orders" || delivery.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("delivery span %q kind %s", delivery.Name(), delivery.SpanKind())
	}
	if delivery.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || delivery.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("the delivery span is not the publisher's child: trace %s parent %s", delivery.SpanContext().TraceID(), delivery.Parent().SpanID())
	}
	if delivery.SpanContext().TraceState().Get("k") != "v" {
		t.Errorf("tracestate %q not carried", delivery.SpanContext().TraceState())
	}
	if call.Parent().SpanID() != delivery.SpanContext().SpanID() {
		t.Error("the call to the app is not the delivery span's child")
	}
	if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + call.SpanContext().SpanID().String() + "-01"; got != want {
		t.Errorf("the app got traceparent %q, want %q", got, want)
	}
	if attr(delivery, "messaging.destination.name") != "orders" || attr(delivery, "dapr.pubsub") != "pubsub" || attr(delivery, "dapr.pubsub.status") != "RETRY" {
		t.Errorf("attributes %v", delivery.Attributes())
	}
	if delivery.Status().Code != codes.Error {
		t.Errorf("status %v", delivery.Status())
	}

	_, end = tr.StartDelivery(context.Background(), "pubsub", "orders", "garbage", "")
	end("SUCCESS", nil)
	spans = rec.Ended()
	if s := spans[len(spans)-1]; s.Parent().IsValid() || s.SpanContext().TraceID().String() == "4bf92f3577b34da6a3ce929d0e0e4736" || s.Status().Code == codes.Error {
		t.Errorf("a malformed traceparent: parent %v, trace %s, status %v", s.Parent(), s.SpanContext().TraceID(), s.Status())
	}

	var off *Tracing
	bg := context.Background()
	ctx, end = off.StartDelivery(bg, "pubsub", "orders", parent, "")
	end("SUCCESS", nil)
	if ctx != bg {
		t.Error("tracing off changed the context")
	}
}
