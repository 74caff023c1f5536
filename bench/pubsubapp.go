package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// sink is the subscribing app of the pub/sub profile: it subscribes to one
// topic (GET /dapr/subscribe), and on each event POSTed to /events takes
// the time it was received, before reading the body, less the send time
// the event carries: the latency from before the publish call to the
// handler, on the harness's one clock.
type sink struct {
	mu      sync.Mutex
	topic   string
	delay   time.Duration // how long the handler takes, to make a slow subscriber
	lat     []time.Duration
	last    time.Time // the latest receipt
	bad     string    // the first event whose send time could not be read
	arrived chan struct{}
}

func newSink() *sink { return &sink{arrived: make(chan struct{}, 1)} }

// reset forgets what was received, and subscribes to topic from now on.
func (s *sink) reset(topic string, delay time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.topic, s.delay, s.lat, s.last, s.bad = topic, delay, nil, time.Time{}, ""
}

func (s *sink) setDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	switch r.Method + " " + r.URL.Path {
	case "GET /dapr/subscribe":
		s.mu.Lock()
		topic := s.topic
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode([]map[string]string{{"pubsubname": "pubsub", "topic": topic, "route": "/events"}})
	case "POST /events":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sent, err := sentOf(body)
		s.mu.Lock()
		delay := s.delay
		if err == nil {
			s.lat = append(s.lat, now.Sub(sent))
			s.last = now
		} else if s.bad == "" {
			s.bad = err.Error()
		}
		s.mu.Unlock()
		select {
		case s.arrived <- struct{}{}:
		default:
		}
		if delay > 0 {
			time.Sleep(delay)
		}
		w.WriteHeader(http.StatusOK)
	default:
		http.NotFound(w, r)
	}
}

// received is how many events arrived since the reset.
func (s *sink) received() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lat)
}

// waitFor waits up to d for n events since the reset, and reports whether
// they came.
func (s *sink) waitFor(n int, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for s.received() < n {
		select {
		case <-s.arrived:
		case <-deadline.C:
			return s.received() >= n
		}
	}
	return true
}

// take returns the latencies received since the reset, sorted, and the
// time of the latest receipt.
func (s *sink) take() (*stats, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &stats{Latencies: slices.Clone(s.lat), Requests: len(s.lat)}
	slices.Sort(st.Latencies)
	var err error
	if s.bad != "" {
		err = fmt.Errorf("the app received an event without its send time: %s", s.bad)
	}
	return st, s.last, err
}

// eventBody is a JSON event of size bytes (at least its fields') carrying
// its send time.
func eventBody(size int, sent time.Time) []byte {
	b := fmt.Appendf(nil, `{"sent":%d,"pad":"`, sent.UnixNano())
	b = append(b, strings.Repeat("x", max(0, size-len(b)-2))...)
	return append(b, `"}`...)
}

// sentOf reads the send time of an event as eventBody writes it, or of the
// CloudEvent that wraps one (its data).
func sentOf(body []byte) (time.Time, error) {
	var ev struct {
		Sent int64 `json:"sent"`
		Data *struct {
			Sent int64 `json:"sent"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return time.Time{}, fmt.Errorf("%w: %.100s", err, body)
	}
	if ev.Data != nil {
		ev.Sent = ev.Data.Sent
	}
	if ev.Sent == 0 {
		return time.Time{}, fmt.Errorf("no sent field: %.100s", body)
	}
	return time.Unix(0, ev.Sent), nil
}
