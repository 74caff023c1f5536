// Package maxprocs decides how many CPUs the sidecar's Go code runs on
// (GOMAXPROCS), and starts the process on its default before the rest of
// the program initialises.
//
// A sidecar runs its Go code on one CPU by default. Measured with the
// benchmark harness on two cores, at 1,000 calls a second, a pair of
// sidecars on one CPU each added less latency than on two (p90 -28%, p99
// -26%), spent 29% less CPU per call and went 23% faster flat out: with
// more than one, every call hands its work between threads that wake each
// other (futex, the scheduler's spinning), which costs more than a sidecar's
// share of work gains on a second CPU. A container with a CPU limit keeps
// Go's own default, the limit rounded up (the owner sized it); so do
// --max-procs 0, and GOMAXPROCS in the environment.
//
// The default is applied in this package's init, which Go runs before the
// packages that make up most of the sidecar's start-up: Go initialises the
// first package, in import path order, whose imports are initialised, and
// this one imports only runtime and syscall (no os, no strings), which are
// among the first. Started on two CPUs and cut to one in main, a sidecar's
// start-up work was spread over two processors' caches of memory spans and
// threads, and it held 1.9 to 2.6 MiB of private memory while idle, from
// one start to the next; started on one, 2.1 MiB. Apply, from main, has
// the last word: --max-procs given there undoes the early default.
package maxprocs

import (
	"runtime"
	"syscall"
)

// cgroupCPUMax is where cgroup v2 puts the container's CPU limit.
const cgroupCPUMax = "/sys/fs/cgroup/cpu.max"

// early reports that init set the default, which Apply may have to undo.
var early bool

// cpuMax is cpu.max as init read it, for Apply.
var cpuMax string

func init() {
	cpuMax = readCPUMax()
	if n, _ := Decide(-1, getenv, cpuMax); n > 0 {
		runtime.GOMAXPROCS(n)
		early = true
	}
}

// Decide decides the sidecar's GOMAXPROCS from --max-procs (-1: not
// given), the environment and the cgroup's cpu.max (its content; "" when
// unreadable): n is 0 when Go's own default stands, and why says where it
// comes from.
func Decide(flag int, getenv func(string) string, cpuMax string) (n int, why string) {
	switch {
	case flag > 0:
		return flag, "--max-procs"
	case flag == 0:
		return 0, "--max-procs 0: Go's default"
	case getenv("GOMAXPROCS") != "":
		return 0, "GOMAXPROCS"
	}
	if quota := firstField(cpuMax); quota != "" && quota != "max" {
		return 0, "the container's CPU limit"
	}
	return 1, "the sidecar's default"
}

// Apply applies Decide for the flag to the runtime and returns the
// GOMAXPROCS in force and why.
func Apply(flag int) (int, string) {
	n, why := Decide(flag, getenv, cpuMax)
	switch {
	case n > 0:
		runtime.GOMAXPROCS(n)
	case early:
		// Go's default after all (--max-procs 0): init's one CPU is
		// undone, and Go follows the CPU limit again as it changes. The
		// environment had no GOMAXPROCS, or init would not have set one.
		runtime.SetDefaultGOMAXPROCS()
	}
	early = false
	return runtime.GOMAXPROCS(0), why
}

// firstField is s's first field ("max" or the quota of "quota period").
func firstField(s string) string {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	j := i
	for j < len(s) && !isSpace(s[j]) {
		j++
	}
	return s[i:j]
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

func getenv(key string) string {
	v, _ := syscall.Getenv(key)
	return v
}

// readCPUMax reads cpu.max ("" when it cannot): a line of a few bytes.
func readCPUMax() string {
	fd, err := syscall.Open(cgroupCPUMax, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer syscall.Close(fd)
	var b [64]byte
	n, err := syscall.Read(fd, b[:])
	if err != nil || n <= 0 {
		return ""
	}
	return string(b[:n])
}
