package dashboard

import (
	"testing"
	"time"
)

func TestParseWindow(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", DefaultWindow, true},
		{"10s", 10 * time.Second, true},
		{"1h", time.Hour, true},
		{"24h", 24 * time.Hour, true},
		{"9s", 0, false},
		{"25h", 0, false},
		{"-5m", 0, false},
		{"5", 0, false},
		{"soon", 0, false},
	} {
		got, err := ParseWindow(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseWindow(%q) = %v, %v; want %v, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestQuantile(t *testing.T) {
	ds := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct{ q, want float64 }{{0.5, 5}, {0.99, 10}, {0.1, 1}, {0, 1}, {1, 10}} {
		if got := quantile(ds, c.q); got != c.want {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := quantile([]float64{3.25}, 0.99); got != 3.25 {
		t.Errorf("one value: %v", got)
	}
}

func TestHop(t *testing.T) {
	span := func(op, kind string) jaegerSpan {
		s := jaegerSpan{Operation: op}
		s.Tags = append(s.Tags, struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		}{"span.kind", kind})
		return s
	}
	for _, c := range []struct {
		s    jaegerSpan
		want bool
	}{
		{span("calllocal/orders/echo", "client"), true},
		{span("CallLocal/orders/echo", "client"), true},
		{span("calllocal/orders/echo", "server"), false},
		{span("callapp/orders/echo", "client"), false},
		{span("set statestore", "client"), false},
		{span("calllocal/", "client"), false},
	} {
		if got := c.s.hop(); got != c.want {
			t.Errorf("%s %v: hop %v, want %v", c.s.Operation, c.s.Tags, got, c.want)
		}
	}
}
