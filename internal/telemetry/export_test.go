package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-run/tandem/internal/config"
)

// checkQueueFullWhileThePostWaits ends a span, lets the collector take
// its post and hold it, and ends exportQueue spans and ten more: the end
// of a span never waits on export, the ten the queue has no room for are
// dropped and counted, and once the collector answers the queue is posted
// and nothing else is lost. settings points tracing at the collector's
// URL; spans counts the spans of a post's body, or refuses it.
func checkQueueFullWhileThePostWaits(t *testing.T, settings func(url string) config.TracingSettings, spans func(body []byte) (int, error)) {
	t.Helper()
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	var mu sync.Mutex
	got := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		n, err := spans(b)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-release
		mu.Lock()
		got += n
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	reg := prometheus.NewRegistry()
	tr, err := NewTracing(settings(srv.URL), Options{AppID: "a", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	_, s := tr.provider().tracer.Start(context.Background(), "first")
	s.End()
	<-arrived // posted after the batch interval, and held: the export waits
	const over = 10
	for range exportQueue + over {
		_, s := tr.provider().tracer.Start(context.Background(), "x")
		s.End()
	}
	if n := dropped(t, reg, "queue_full"); n != over {
		t.Errorf("queue_full = %v, want %d", n, over)
	}
	unblock()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got != 1+exportQueue {
		t.Errorf("the collector got %d spans, want %d", got, 1+exportQueue)
	}
}
