package main

import "testing"

func TestProcs(t *testing.T) {
	noEnv := func(string) string { return "" }
	withEnv := func(k string) string {
		if k == "GOMAXPROCS" {
			return "3"
		}
		return ""
	}
	for _, c := range []struct {
		name   string
		flag   int
		getenv func(string) string
		cpuMax string
		want   int
	}{
		{"default: one", -1, noEnv, "", 1},
		{"default, no CPU limit: one", -1, noEnv, "max 100000\n", 1},
		{"a CPU limit: Go's default, the limit", -1, noEnv, "250000 100000\n", 0},
		{"GOMAXPROCS: Go takes it", -1, withEnv, "", 0},
		{"--max-procs 0: Go's default", 0, noEnv, "", 0},
		{"--max-procs wins over GOMAXPROCS and a limit", 4, withEnv, "250000 100000\n", 4},
	} {
		if n, why := procs(c.flag, c.getenv, c.cpuMax); n != c.want || why == "" {
			t.Errorf("%s: %d (%s), want %d", c.name, n, why, c.want)
		}
	}
}
