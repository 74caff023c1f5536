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
	deps := listDeps(t, module+"/cmd/sidecar")
	if !deps["google.golang.org/grpc"] || !deps["gopkg.in/yaml.v3"] {
		t.Fatalf("go list -deps does not list what the sidecar imports: %v", deps)
	}
	for _, p := range []string{"golang.org/x/net/trace", "html/template", "text/template", "sigs.k8s.io/yaml", "go.yaml.in/yaml/v2", "github.com/zitadel/oidc/v3/pkg/op"} {
		if deps[p] {
			t.Errorf("the sidecar links %s", p)
		}
	}
}

const module = "github.com/tandem-run/tandem"

// listDeps is the set of packages pkg imports, directly or not, and pkg.
func listDeps(t *testing.T, pkg string) map[string]bool {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-tags", Tags, pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		deps[p] = true
	}
	return deps
}

// Dependencies point the way the design says. What speaks invocation's
// wire vocabulary without making calls (access control, telemetry, the
// API token, the error catalog) needs internal/invoke/wire, not the
// invoker; the vocabulary imports no package of ours; the invoker renders
// no API.
func TestDependencyDirection(t *testing.T) {
	for _, c := range []struct {
		pkg       string
		forbidden string // a package, or a prefix ending in "/"
	}{
		{"internal/acl", "internal/invoke"},
		{"internal/telemetry", "internal/invoke"},
		{"internal/api/token", "internal/invoke"},
		{"internal/apierr", "internal/invoke"},
		{"internal/invoke/wire", ""}, // nothing of ours
		{"internal/invoke", "internal/api/"},
	} {
		t.Run(c.pkg, func(t *testing.T) {
			self := module + "/" + c.pkg
			deps := listDeps(t, self)
			if !deps[self] {
				t.Fatalf("go list -deps does not list %s itself: %v", self, deps)
			}
			forbidden := module + "/" + c.forbidden
			for p := range deps {
				if p == self {
					continue
				}
				if p == forbidden || strings.HasSuffix(forbidden, "/") && strings.HasPrefix(p, forbidden) {
					t.Errorf("%s imports %s", c.pkg, p)
				}
			}
		})
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
