// Package chart tests the Helm chart in charts/tandem with the real helm:
// lint, rendering against golden files, and the values schema. Installing
// it into a real API server is in tests/e2e.
package chart

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/testutil/toolbin"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata")

const chart = "../../charts/tandem"

func helm(t *testing.T) string {
	t.Helper()
	return toolbin.Path(t, "helm")
}

func run(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func cases(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/*.values.yaml")
	if err != nil || len(files) == 0 {
		t.Fatal("no testdata/*.values.yaml")
	}
	return files
}

func TestLint(t *testing.T) {
	h := helm(t)
	for _, values := range cases(t) {
		if out, err := run(t, h, "lint", "--strict", chart, "-f", values); err != nil {
			t.Errorf("helm lint -f %s: %v\n%s", values, err, out)
		}
	}
}

// TestTemplateGolden renders the chart with each testdata/<case>.values.yaml
// and compares with <case>.golden.yaml; go test -update rewrites them, and a
// golden file without its values fails. Every document must also be
// well-formed (no duplicate keys) with an apiVersion, kind and name.
func TestTemplateGolden(t *testing.T) {
	h := helm(t)
	want := map[string]bool{}
	for _, values := range cases(t) {
		name := strings.TrimSuffix(filepath.Base(values), ".values.yaml")
		golden := filepath.Join("testdata", name+".golden.yaml")
		want[golden] = true
		t.Run(name, func(t *testing.T) {
			out, err := run(t, h, "template", "tandem", chart, "--namespace", "tandem-system", "-f", values)
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, out)
			}
			for i, doc := range strings.Split(out, "\n---\n") {
				if strings.TrimSpace(doc) == "" || strings.TrimSpace(doc) == "---" {
					continue
				}
				var m map[string]any
				if err := yaml.UnmarshalStrict([]byte(doc), &m); err != nil {
					t.Errorf("document %d is not well-formed: %v\n%s", i, err, doc)
					continue
				}
				u := unstructured.Unstructured{Object: m}
				if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
					t.Errorf("document %d lacks apiVersion, kind or name:\n%s", i, doc)
				}
			}
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			exp, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -update creates it)", err)
			}
			if string(exp) != out {
				t.Errorf("helm template differs from %s (go test -update rewrites it):\n%s", golden, out)
			}
		})
	}
	goldens, _ := filepath.Glob("testdata/*.golden.yaml")
	for _, g := range goldens {
		if !want[g] {
			t.Errorf("stale golden file %s: its values file is gone; delete it", g)
		}
	}
}

// TestSchemaRefusesBadValues: a bad value fails at helm install (template)
// with a message naming it.
func TestSchemaRefusesBadValues(t *testing.T) {
	h := helm(t)
	for _, c := range []struct{ set, want string }{
		{"webhook.failurePolicy=Sometimes", "failurePolicy"},
		{"injector.replicas=0", "replicas"},
		{"injector.port=80", "port"},
		{"sidecar.resources.requests.memory=lots", "memory"},
		{"tracing.samplingRate=often", "samplingRate"},
		{"redis.externalAddress=redis", "externalAddress"},
		{"appNamespaces[0]=Not_A_Namespace", "appNamespaces"},
		{"injector.logLevel=loud", "logLevel"},
		{"zipkin.enable=true", "enable"},
		{"sidecar.native=sometimes", "native"},
		{"dashboard.port=80", "port"},
		{"dashboard.enable=true", "enable"},
	} {
		out, err := run(t, h, "template", "tandem", chart, "--set", c.set)
		if err == nil || !strings.Contains(out, c.want) || !strings.Contains(out, "schema") {
			t.Errorf("--set %s: err %v, output %q; want a schema error naming %q", c.set, err, out, c.want)
		}
	}
}
