package maxprocs

import (
	"flag"
	"os"
	"runtime"
	"testing"
)

func TestDecide(t *testing.T) {
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
		{"a limit after spaces", -1, noEnv, "  50000 100000", 0},
		{"no limit, no newline", -1, noEnv, "max", 1},
	} {
		if n, why := Decide(c.flag, c.getenv, c.cpuMax); n != c.want || why == "" {
			t.Errorf("%s: %d (%s), want %d", c.name, n, why, c.want)
		}
	}
}

// The test binary starts as the sidecar does: init has run. What it set,
// and what Apply does after it, are the runtime's own figures.
func TestInitAndApply(t *testing.T) {
	if n, why := Decide(-1, os.Getenv, readCPUMax()); n != 1 {
		t.Skipf("init keeps Go's default here (%s)", why)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	if !early {
		t.Fatal("init did not set the default")
	}
	// go test -cpu sets its own after init.
	if f := flag.Lookup("test.cpu"); (f == nil || f.Value.String() == "") && runtime.GOMAXPROCS(0) != 1 {
		t.Fatalf("after init: GOMAXPROCS %d, want 1", runtime.GOMAXPROCS(0))
	}
	if n, why := Apply(-1); n != 1 || why != "the sidecar's default" {
		t.Errorf("Apply(-1) = %d (%s), want 1", n, why)
	}
	if n, _ := Apply(3); n != 3 {
		t.Errorf("Apply(3) = %d, want 3", n)
	}
	runtime.GOMAXPROCS(1)
	early = true // as init leaves it
	runtime.SetDefaultGOMAXPROCS()
	want := runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(1)
	if n, _ := Apply(0); n != want {
		t.Errorf("Apply(0) after init's default = %d, want Go's default %d", n, want)
	}
}

// readCPUMax reads what os.ReadFile reads.
func TestReadCPUMax(t *testing.T) {
	want, err := os.ReadFile(cgroupCPUMax)
	if err != nil {
		want = nil
	}
	if got := readCPUMax(); got != string(want) {
		t.Errorf("readCPUMax() = %q, want %q", got, want)
	}
}
