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
