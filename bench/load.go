package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// load is how a path is driven.
type load struct {
	Rate     int // requests per second; 0: as fast as the connections go
	Conns    int
	Duration time.Duration
}

// stats summarises one run of a path.
type stats struct {
	Latencies []time.Duration // sorted
	Requests  int
	Errors    int
	FirstErr  string
	Elapsed   time.Duration
}

func (s *stats) quantile(q float64) time.Duration {
	if len(s.Latencies) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(s.Latencies)))) - 1
	return s.Latencies[max(0, min(i, len(s.Latencies)-1))]
}

func (s *stats) rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Requests) / s.Elapsed.Seconds()
}

func (s *stats) add(lat time.Duration, err error) {
	s.Requests++
	if err != nil {
		s.Errors++
		if s.FirstErr == "" {
			s.FirstErr = err.Error()
		}
		return
	}
	s.Latencies = append(s.Latencies, lat)
}

// attackHTTP drives an HTTP target with vegeta: an open-loop attack at a
// fixed rate over a fixed pool of keep-alive connections.
func attackHTTP(tgt vegeta.Target, l load, h2c bool) *stats {
	return attackWith(newAttacker(l, h2c), tgt, l)
}

// newAttacker is vegeta's attacker with l.Conns keep-alive connections.
func newAttacker(l load, h2c bool) *vegeta.Attacker {
	opts := []func(*vegeta.Attacker){
		vegeta.Connections(l.Conns), vegeta.MaxConnections(l.Conns),
		vegeta.Workers(uint64(l.Conns)), vegeta.MaxWorkers(uint64(l.Conns)),
		vegeta.KeepAlive(true), vegeta.Timeout(10 * time.Second),
	}
	if h2c {
		opts = append(opts, vegeta.H2C(true))
	}
	return vegeta.NewAttacker(opts...)
}

// attackWith runs one attack with a, whose connections stay open after.
func attackWith(a *vegeta.Attacker, tgt vegeta.Target, l load) *stats {
	var p vegeta.Pacer = vegeta.ConstantPacer{Freq: l.Rate, Per: time.Second}
	s := &stats{}
	start := time.Now()
	for res := range a.Attack(vegeta.NewStaticTargeter(tgt), p, l.Duration, "bench") {
		var err error
		switch {
		case res.Error != "":
			err = errors.New(res.Error)
		case res.Code < 200 || res.Code > 299:
			err = fmt.Errorf("HTTP %d: %.200s", res.Code, res.Body)
		}
		s.add(res.Latency, err)
	}
	s.Elapsed = time.Since(start)
	slices.Sort(s.Latencies)
	return s
}

// attackFunc drives call the way vegeta drives HTTP: l.Conns workers, each
// hit released at the time vegeta's constant pacer gives (or at once with
// rate 0), latency measured from the release. For gRPC, which vegeta's
// attacker does not speak.
func attackFunc(call func(context.Context) error, l load) *stats {
	var p vegeta.Pacer = vegeta.ConstantPacer{Freq: l.Rate, Per: time.Second}
	ticks := make(chan time.Time)
	results := make(chan struct {
		lat time.Duration
		err error
	}, 1024)
	var wg sync.WaitGroup
	for range l.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for due := range ticks {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := call(ctx)
				cancel()
				results <- struct {
					lat time.Duration
					err error
				}{time.Since(due), err}
			}
		}()
	}
	start := time.Now()
	go func() {
		defer close(ticks)
		var hits uint64
		for {
			elapsed := time.Since(start)
			if elapsed >= l.Duration {
				return
			}
			if l.Rate > 0 {
				wait, stop := p.Pace(elapsed, hits)
				if stop {
					return
				}
				if wait > 0 {
					time.Sleep(wait)
					continue
				}
			}
			ticks <- time.Now()
			hits++
		}
	}()
	go func() { wg.Wait(); close(results) }()
	s := &stats{}
	for r := range results {
		s.add(r.lat, r.err)
	}
	s.Elapsed = time.Since(start)
	slices.Sort(s.Latencies)
	return s
}

// httpCall is one request with Go's client, for warm-ups and checks.
func httpCall(c *http.Client, tgt vegeta.Target) error {
	req, err := tgt.Request()
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}
