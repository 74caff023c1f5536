package invoke

import (
	"net/http"
	"testing"
)

func TestIsEventStream(t *testing.T) {
	for ct, want := range map[string]bool{
		"":                                 false,
		"text/event-stream":                true,
		"Text/Event-Stream":                true,
		"text/event-stream; charset=utf-8": true,
		"text/event-stream;charset=utf-8":  true,
		"text/event-streams":               false,
		"text/event-stream/x":              false,
		"application/json":                 false,
		"text/event":                       false,
		"text/event-stream; bad":           false, // malformed parameters: not read as a stream
		"application/octet-stream":         false,
	} {
		h := http.Header{}
		if ct != "" {
			h.Set("Content-Type", ct)
		}
		if got := isEventStream(h); got != want {
			t.Errorf("isEventStream(%q) = %v, want %v", ct, got, want)
		}
	}
}
