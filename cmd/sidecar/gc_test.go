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
	var allocated uint64
	reclaims := 0
	r := newIdleReclaimer(func() uint64 { return allocated }, func() { reclaims++; allocated += 1000 })
	step := func(name string, alloc uint64, want bool) {
		t.Helper()
		allocated += alloc
		before := reclaims
		if got := r.tick(); got != want || reclaims-before != map[bool]int{true: 1}[want] {
			t.Fatalf("%s: reclaimed %v (%d times); want %v", name, got, reclaims-before, want)
		}
	}
	step("quiet from the start", 0, false)
	step("a burst begins", 5<<20, false)
	step("the burst goes on", 5<<20, false)
	step("idle after 10 MiB", 100<<10, true)
	step("still idle: nothing more to return", 0, false)
	// A trickle below the idle bound: every tick idle, and the 41st of
	// 200 KiB passes reclaimAfterBytes since the last reclaim.
	for range 40 {
		step("a trickle", 200<<10, false)
	}
	step("the trickle reaches 8 MiB", 200<<10, true)
	step("busy: 1 MiB in a second", 1<<20, false)
	step("busy", 9<<20, false)
	step("busy again right after", 1<<20, false)
	step("idle", 0, true)
}
