package injector

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/version"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/inject")

var testConfig = Config{
	SidecarImage: "tandem/sidecar:dev",
	PullPolicy:   corev1.PullIfNotPresent,
	Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("48Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	},
	ClusterDomain:   "cluster.local",
	AllowedUsers:    DefaultAllowedUsers,
	NativeSupported: true,
	BlockShutdown:   DefaultBlockShutdown,
}

// configFor is the injector's Config for a golden pod, by its file's name:
// native-* are injected by an injector whose default is native sidecars,
// old-cluster-* by one on a cluster without them, mtls-* by one giving
// sidecars mutual TLS, the others by testConfig
// (classic by default, native on request).
func configFor(name string) Config {
	cfg := testConfig
	switch {
	case strings.HasPrefix(name, "native-"):
		cfg.Native = true
	case strings.HasPrefix(name, "old-cluster-"):
		cfg.NativeSupported = false
	case strings.HasPrefix(name, "mtls-"):
		cfg.MTLS = &MTLS{SentryAddress: "https://tandem-injector.tandem-system.svc:8443", TrustDomain: "public",
			BundleConfigMap: "tandem-trust-bundle", Audience: "tandem-ca"}
	}
	return cfg
}

// golden is what a golden file holds: the patch and warnings, or the error.
type golden struct {
	Patch    []PatchOp `json:"patch,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// TestInjectGolden runs Inject on every pod in testdata/inject/*.yaml (with
// configFor its name) and compares the result with the .golden.json beside
// it. go test -update
// rewrites them; a golden file without its pod fails.
func TestInjectGolden(t *testing.T) {
	pods, err := filepath.Glob("testdata/inject/*.yaml")
	if err != nil || len(pods) == 0 {
		t.Fatalf("no pods in testdata/inject: %v", err)
	}
	want := map[string]bool{}
	for _, in := range pods {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		goldenPath := strings.TrimSuffix(in, ".yaml") + ".golden.json"
		want[goldenPath] = true
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var pod corev1.Pod
			if err := yaml.UnmarshalStrict(b, &pod); err != nil {
				t.Fatal(err)
			}
			ops, warnings, err := Inject(configFor(name), &pod)
			g := golden{Patch: ops, Warnings: warnings}
			if err != nil {
				g = golden{Error: err.Error()}
			}
			got, _ := json.MarshalIndent(g, "", "  ")
			got = append(got, '\n')
			if *update {
				if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			exp, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, exp) {
				t.Errorf("Inject differs from %s (go test -update rewrites it):\n--- got\n%s", goldenPath, got)
			}
		})
	}
	goldens, _ := filepath.Glob("testdata/inject/*.golden.json")
	for _, g := range goldens {
		if !want[g] {
			t.Errorf("stale golden file %s: its pod is gone; delete it", g)
		}
	}
}

func TestNativeSidecarsSupported(t *testing.T) {
	for _, c := range []struct {
		major, minor string
		want         bool
	}{{"1", "28", false}, {"1", "29", true}, {"1", "37", true}, {"1", "30+", true}, {"2", "0", true}, {"1", "9", false}} {
		got, err := NativeSidecarsSupported(&version.Info{Major: c.major, Minor: c.minor})
		if err != nil || got != c.want {
			t.Errorf("%s.%s: %v %v, want %v", c.major, c.minor, got, err, c.want)
		}
	}
	if _, err := NativeSidecarsSupported(&version.Info{Major: "one", GitVersion: "v?"}); err == nil {
		t.Error("a version that is not a number: no error")
	}
}
