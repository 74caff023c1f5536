package main

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// A sidecar's garbage collector runs at GOGC=200 by default, not Go's 100.
// Its live heap is small (a few MiB: connections, buffers, the calls in
// flight), so at 100 it collected several times a second under load. In
// the benchmark's CPU profile of a sidecar at 1,000 calls a second, the
// collector's share fell from 16% to 5%; in its full run (5 rounds) the
// pair's added p99 was 0.91x that at 100, p90 1.13x (within the rounds'
// spread), CPU per call and throughput the same, and peak RSS 1.18x (the
// floor proxy's); a 3-round A/B before it had p90 0.76x and p99 0.75x.
// GOGC in the environment is taken as Go takes it.
const defaultGCPercent = 200

// A container's memory limit becomes the collector's soft limit (Go's
// GOMEMLIMIT) at nine tenths of it, so that a busy sidecar collects harder
// near its limit rather than being killed at it; GOMEMLIMIT in the
// environment is taken as Go takes it.
const (
	cgroupMemoryMax  = "/sys/fs/cgroup/memory.max"
	memoryLimitShare = 0.9
)

// gcSettings decides GOGC and the soft memory limit from the environment
// and the cgroup's memory.max (its content; "" when unreadable): percent
// and limit are -1 where Go's own setting stands.
func gcSettings(getenv func(string) string, memoryMax string) (percent int, limit int64) {
	percent, limit = defaultGCPercent, -1
	if getenv("GOGC") != "" {
		percent = -1
	}
	if getenv("GOMEMLIMIT") == "" {
		if n, err := strconv.ParseInt(strings.TrimSpace(memoryMax), 10, 64); err == nil && n > 0 {
			limit = int64(float64(n) * memoryLimitShare)
		}
	}
	return percent, limit
}

// setGC applies gcSettings to the runtime and returns the GOGC and the
// soft memory limit in force (-1 and 0: none).
func setGC() (percent int, limit int64) {
	memoryMax, _ := os.ReadFile(cgroupMemoryMax)
	p, l := gcSettings(os.Getenv, string(memoryMax))
	if p >= 0 {
		debug.SetGCPercent(p)
	}
	if l > 0 {
		debug.SetMemoryLimit(l)
	}
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(s)
	percent, limit = int(s[0].Value.Uint64()), int64(s[1].Value.Uint64())
	if limit == math.MaxInt64 { // no limit
		limit = 0
	}
	return percent, limit
}

// After a burst of calls, GOGC=200 leaves up to three times the live heap
// in the process: garbage until the next collection, which an idle sidecar
// does not reach, and then free pages that Go's scavenger returns only down
// to what the heap's goal allows. A sidecar is idle most of its life, and
// its connections stay open while it is: 2,000 connections that each made
// one call and went idle held 31.9 KiB each in a sidecar, 24.8 at GOGC=100,
// 25.7 in a bare reverse proxy. So once the sidecar has been quiet for a
// second (it allocated less than idleAllocBytes in it) after allocating at
// least reclaimAfterBytes since it last did so, it collects and returns its
// free memory to the system (debug.FreeOSMemory): one collection of a small
// heap, a few milliseconds of CPU when no call waits for it.
const (
	reclaimEvery       = time.Second
	idleAllocBytes     = 256 << 10
	reclaimAfterBytes  = 8 << 20
	metricAllocBytes   = "/gc/heap/allocs:bytes"
	metricGCCycles     = "/gc/cycles/total:gc-cycles"
	metricHeapReleased = "/memory/classes/heap/released:bytes"
)

// memReading is what the reclaimer reads of the runtime at each tick.
type memReading struct {
	allocated uint64 // bytes allocated since the process started
	cycles    uint64 // collections completed
}

// idleAction is what a tick of the reclaimer did.
type idleAction int

const (
	idleNothing   idleAction = iota
	idleReclaimed            // collected, returned free memory, unmapped
	idleUnmapped             // a collection had run: unmapped what it read
)

// idleReclaimer decides, once per reclaimEvery, whether the sidecar is
// idle after a burst (see reclaimAfterBytes), or idle after a collection
// it did not ask for (Go forces one two minutes after the last, once one
// has run; an idle sidecar that never collected gets none): a collection
// reads the binary's function tables as it walks the goroutines' stacks,
// and the pages it read are unmapped again (see releaseStartPages).
type idleReclaimer struct {
	read    func() memReading
	reclaim func() // collect and return free memory
	unmap   func() // unmap the binary's pages
	last    memReading
	since   uint64 // allocated at the last reclaim, or at the start
}

func newIdleReclaimer(read func() memReading, reclaim, unmap func()) *idleReclaimer {
	now := read()
	return &idleReclaimer{read: read, reclaim: reclaim, unmap: unmap, last: now, since: now.allocated}
}

// tick reclaims when the process allocated less than idleAllocBytes since
// the previous tick and at least reclaimAfterBytes since the last reclaim;
// else, idle, it unmaps when a collection ran since the previous tick.
func (r *idleReclaimer) tick() idleAction {
	now := r.read()
	idle := now.allocated-r.last.allocated < idleAllocBytes
	collected := now.cycles != r.last.cycles
	r.last = now
	switch {
	case !idle:
		return idleNothing
	case now.allocated-r.since >= reclaimAfterBytes:
		r.reclaim()
		r.unmap()
		// The collection allocates a little itself and is a cycle:
		// counted from after it.
		r.last = r.read()
		r.since = r.last.allocated
		return idleReclaimed
	case collected:
		r.unmap()
		return idleUnmapped
	}
	return idleNothing
}

// readMemory reads the reclaimer's runtime metrics.
func readMemory() memReading {
	s := []metrics.Sample{{Name: metricAllocBytes}, {Name: metricGCCycles}}
	metrics.Read(s)
	return memReading{allocated: s[0].Value.Uint64(), cycles: s[1].Value.Uint64()}
}

// readMetric reads one uint64 runtime metric.
func readMetric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// reclaimIdle returns a burst's memory to the system once the sidecar is
// idle after it (see reclaimAfterBytes), and calls unmap after that and
// after any collection while it is idle, until ctx ends. What was
// allocated before it is called is not counted.
func reclaimIdle(ctx context.Context, log *slog.Logger, unmap func()) {
	r := newIdleReclaimer(readMemory, func() {
		before := readMetric(metricHeapReleased)
		debug.FreeOSMemory()
		log.Debug("idle after a burst: freed memory returned to the system",
			"bytes", int64(readMetric(metricHeapReleased))-int64(before))
	}, unmap)
	t := time.NewTicker(reclaimEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.tick()
		}
	}
}
