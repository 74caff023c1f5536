// Package toolbin gives tests the programs tools/build makes from their
// pinned Go modules (Jaeger, the Kubernetes control plane, CoreDNS, Helm),
// built once and cached under ~/.cache/tandem/tools.
//
// A first build takes minutes (the Kubernetes programs about half an
// hour), so under go test -short a test that needs one is skipped: the
// contributor's quick loop (make quick) stays quick, and make test, which
// CI runs, runs them all.
package toolbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Paths returns the paths of the named programs, building those not yet
// cached. Under -short it skips the test instead.
func Paths(t testing.TB, names ...string) []string {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s from tools/build (minutes to build the first time): make test runs it", strings.Join(names, ", "))
	}
	cmd := exec.Command(filepath.Join(Root(t), "tools", "build"), names...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tools/build %v: %v", names, err)
	}
	paths := strings.Fields(string(out))
	if len(paths) != len(names) {
		t.Fatalf("tools/build %v printed %q", names, out)
	}
	return paths
}

// Path is Paths of one program.
func Path(t testing.TB, name string) string {
	t.Helper()
	return Paths(t, name)[0]
}

// Root is the repository's root: the nearest folder above the test's that
// holds tools/build.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tools", "build")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no tools/build above the test's folder")
		}
		dir = parent
	}
}
