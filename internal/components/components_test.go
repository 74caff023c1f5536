package components

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadDir(t *testing.T) {
	comps, err := LoadDir("testdata/good", "myapp")
	if err != nil {
		t.Fatal(err)
	}
	if len(comps) != 2 || comps[0].Metadata.Name != "cache" || comps[1].Metadata.Name != "statestore" {
		t.Fatalf("loaded %+v; want cache and statestore (otherstore is scoped to another app)", comps)
	}
	md, err := comps[1].MetadataMap()
	if err != nil || md["redisHost"] != "localhost:6379" || md["redisDB"] != "2" || md["enableTLS"] != "false" || md["redisPassword"] != "" {
		t.Errorf("metadata %v, %v", md, err)
	}
	svc, err := StateService(comps, "myapp", "", true, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if got := len(svc.Stores()); got != 2 {
		t.Errorf("%d stores, want 2 (no default when components exist)", got)
	}
}

func TestBadFilesNameFileFieldAndAccepted(t *testing.T) {
	cases := map[string][]string{
		"unknown-type.yaml": {"unknown-type.yaml", "state.mongodb", "state.redis, state.in-memory"},
		"typo-field.yaml":   {"typo-field.yaml", "typ"},
		"bad-value.yaml":    {"bad-value.yaml", "redisDB", "0 to 15"},
		"secret.yaml":       {"secret.yaml", "secretKeyRef"},
		"not-yaml.yaml":     {"not-yaml.yaml", "YAML"},
		"version.yaml":      {"version.yaml", "dapr.io/v2", "dapr.io/v1alpha1"},
		"pubsub.yaml":       {"pubsub.yaml", "pubsub.redis"},
	}
	for file, want := range cases {
		t.Run(file, func(t *testing.T) {
			dir := t.TempDir()
			b, err := os.ReadFile(filepath.Join("testdata/bad", file))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
				t.Fatal(err)
			}
			comps, err := LoadDir(dir, "myapp")
			if err == nil {
				_, err = StateService(comps, "myapp", "", true, slog.New(slog.DiscardHandler))
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestDefaultStore(t *testing.T) {
	svc, err := StateService(nil, "myapp", "", true, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if s := svc.Stores(); len(s) != 1 || s[0].Name != "statestore" || s[0].Type != "state.in-memory" {
		t.Errorf("stores %+v", s)
	}
	if _, err := LoadDir("testdata/nonexistent", "a"); err == nil || !strings.Contains(err.Error(), "--resources-path") {
		t.Errorf("missing folder: %v", err)
	}
}
