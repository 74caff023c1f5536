package main

import (
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	s := &stats{}
	for i := 1; i <= 1000; i++ {
		s.add(time.Duration(i)*time.Microsecond, nil)
	}
	for q, want := range map[float64]time.Duration{.5: 500 * time.Microsecond, .9: 900 * time.Microsecond, .99: 990 * time.Microsecond, .999: 999 * time.Microsecond, 1: 1000 * time.Microsecond} {
		if got := s.quantile(q); got != want {
			t.Errorf("quantile(%v) = %s, want %s", q, got, want)
		}
	}
	if (&stats{}).quantile(.5) != 0 {
		t.Error("no samples: not 0")
	}
}
