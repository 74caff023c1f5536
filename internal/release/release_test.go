package release

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The shipped sidecar links neither grpc's request tracing and the
// templates it brings (they keep every exported method of the binary)
// nor a second YAML library: a dependency that brings them back fails
// here, not in the benchmark's memory figures.
func TestSidecarDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", Tags, "github.com/tandem-run/tandem/cmd/sidecar").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		deps[p] = true
	}
	if !deps["google.golang.org/grpc"] || !deps["gopkg.in/yaml.v3"] {
		t.Fatalf("go list -deps does not list what the sidecar imports:\n%s", out)
	}
	for _, p := range []string{"golang.org/x/net/trace", "html/template", "text/template", "sigs.k8s.io/yaml", "go.yaml.in/yaml/v2"} {
		if deps[p] {
			t.Errorf("the sidecar links %s", p)
		}
	}
}

// Command builds a static binary with the tags and the version.
func TestCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the sidecar")
	}
	bin := filepath.Join(t.TempDir(), "sidecar")
	cmd := Command(context.Background(), "../..", "./cmd/sidecar", bin, "1.2.3-test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"-tags=" + Tags, "CGO_ENABLED=0", "-trimpath=true"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("go version -m has no %q:\n%s", want, out)
		}
	}
	v, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(v), "1.2.3-test") {
		t.Fatalf("--version: %v %s", err, v)
	}
}
