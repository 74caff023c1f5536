package node

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestSweep leaves behind what a killed run would (a process naming Root,
// one in a kubepods cgroup, a mount under Root, the bridge, a redirect rule,
// a kernel setting the kubelet changes) and sweeps: nothing is left, and
// the setting is back.
func TestSweep(t *testing.T) {
	if err := preflight(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lock, err := takeLock(ctx, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if left := Leftovers(); len(left) > 0 {
		t.Fatalf("leftovers before the test: %v", left)
	}
	t.Cleanup(func() { _ = sweep(t.Logf) })

	if err := os.MkdirAll(filepath.Join(Root, "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}
	panicWas, _ := readSysctl("kernel.panic")
	if err := saveSysctls(); err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(panicWas)
	if err := os.WriteFile(sysctlPath("kernel.panic"), []byte(strconv.Itoa(n+7)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", filepath.Join(Root, "mnt"), "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	named := exec.Command("bash", "-c", "sleep 600", filepath.Join(Root, "shim"))
	if err := named.Start(); err != nil {
		t.Fatal(err)
	}
	go named.Wait()
	cg := filepath.Join(cgroupRoot, "pids", "kubepods", "pod-test")
	if err := os.MkdirAll(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	contained := exec.Command("sleep", "600")
	if err := contained.Start(); err != nil {
		t.Fatal(err)
	}
	go contained.Wait()
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(contained.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := setUpNetwork(); err != nil {
		t.Fatal(err)
	}
	if err := addRules(redirectRules(12345)); err != nil {
		t.Fatal(err)
	}
	if left := Leftovers(); len(left) < 6 {
		t.Fatalf("the leftovers made are not all seen: %v", left)
	}

	if err := sweep(t.Logf); err != nil {
		t.Fatal(err)
	}
	if left := Leftovers(); len(left) > 0 {
		t.Errorf("left after the sweep: %v", left)
	}
	if v, _ := readSysctl("kernel.panic"); v != panicWas {
		t.Errorf("kernel.panic is %s after the sweep, was %s", v, panicWas)
	}
}
