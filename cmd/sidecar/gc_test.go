package main

import "testing"

func TestGCSettings(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, c := range []struct {
		name      string
		getenv    func(string) string
		memoryMax string
		percent   int
		limit     int64
	}{
		{"default: 200, no limit", env(), "", 200, -1},
		{"no memory limit", env(), "max\n", 200, -1},
		{"a memory limit: nine tenths of it", env(), "104857600\n", 200, 94371840},
		{"GOGC: Go takes it", env("GOGC", "50"), "", -1, -1},
		{"GOGC=off: Go takes it", env("GOGC", "off"), "", -1, -1},
		{"GOMEMLIMIT: Go takes it", env("GOMEMLIMIT", "1GiB"), "104857600\n", 200, -1},
		{"an unreadable memory.max", env(), "garbage", 200, -1},
	} {
		if p, l := gcSettings(c.getenv, c.memoryMax); p != c.percent || l != c.limit {
			t.Errorf("%s: GOGC %d, limit %d; want %d, %d", c.name, p, l, c.percent, c.limit)
		}
	}
}

func TestIdleReclaimer(t *testing.T) {
	var now memReading
	var reclaims, unmaps int
	r := newIdleReclaimer(func() memReading { return now },
		func() { reclaims++; now.allocated += 1000; now.cycles++ },
		func() { unmaps++ })
	step := func(name string, alloc, cycles uint64, want idleAction) {
		t.Helper()
		now.allocated += alloc
		now.cycles += cycles
		r0, u0 := reclaims, unmaps
		got := r.tick()
		wantR, wantU := 0, 0
		switch want {
		case idleReclaimed:
			wantR, wantU = 1, 1
		case idleUnmapped:
			wantU = 1
		}
		if got != want || reclaims-r0 != wantR || unmaps-u0 != wantU {
			t.Fatalf("%s: action %d (%d reclaims, %d unmaps); want %d", name, got, reclaims-r0, unmaps-u0, want)
		}
	}
	step("quiet from the start", 0, 0, idleNothing)
	step("a burst begins", 5<<20, 2, idleNothing)
	step("the burst goes on", 5<<20, 3, idleNothing)
	step("idle after 10 MiB", 100<<10, 0, idleReclaimed)
	step("still idle: nothing more to return", 0, 0, idleNothing)
	// A trickle below the idle bound: every tick idle, and the 41st of
	// 200 KiB passes reclaimAfterBytes since the last reclaim.
	for range 40 {
		step("a trickle", 200<<10, 0, idleNothing)
	}
	step("the trickle reaches 8 MiB", 200<<10, 0, idleReclaimed)
	step("busy: 1 MiB in a second", 1<<20, 1, idleNothing)
	step("busy", 9<<20, 4, idleNothing)
	step("busy again right after", 1<<20, 0, idleNothing)
	step("idle", 0, 0, idleReclaimed)
	step("idle, Go's forced collection", 0, 1, idleUnmapped)
	step("idle, no collection", 10<<10, 0, idleNothing)
	step("busy, a collection, under 8 MiB", 3<<20, 1, idleNothing)
	step("idle again: no collection since the busy tick", 0, 0, idleNothing)
	step("idle, a collection", 0, 1, idleUnmapped)
}
