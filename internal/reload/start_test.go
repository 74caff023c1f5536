package reload

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/acl"
	"github.com/tandem-run/tandem/internal/resiliency"
	"github.com/tandem-run/tandem/internal/testutil/syncbuf"
	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/state"
)

// loadAndApply does what the sidecar does at start with the folder dir:
// Load, then Apply. It returns the first error, and the log.
func loadAndApply(t *testing.T, dir string) (*state.Service, string, error) {
	t.Helper()
	svc, _, logs, err := loadAndApplyAll(t, dir)
	return svc, logs, err
}

// loadAndApplyAll is loadAndApply, with the pub/sub service too.
func loadAndApplyAll(t *testing.T, dir string) (*state.Service, *pubsub.Service, string, error) {
	t.Helper()
	var logs syncbuf.Buffer
	r, err := Load(context.Background(), Sources{AppID: "myapp", Dirs: []string{dir}, DefaultStore: true,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		return nil, nil, logs.String(), err
	}
	svc := state.NewService("myapp", "")
	t.Cleanup(func() { _ = svc.Close() })
	ps := pubsub.NewService()
	t.Cleanup(func() { _ = ps.Close() })
	err = r.Apply(context.Background(), Targets{State: svc, PubSub: ps, ACL: &acl.Switch{}, Resiliency: resiliency.NewSwitch(nil, nil)})
	return svc, ps, logs.String(), err
}

// A file that does not load stops the sidecar at start, with an error
// naming the file, the field and what is accepted.
func TestStartRefusesBadFiles(t *testing.T) {
	cases := map[string][]string{
		"unknown-type.yaml": {"unknown-type.yaml", "state.mongodb", "state.redis, state.in-memory"},
		"typo-field.yaml":   {"typo-field.yaml", "typ"},
		"bad-value.yaml":    {"bad-value.yaml", "redisDB", "0 to 15"},
		"secret.yaml":       {"secret.yaml", "secretKeyRef"},
		"not-yaml.yaml":     {"not-yaml.yaml", "YAML"},
		"version.yaml":      {"version.yaml", "dapr.io/v2", "dapr.io/v1alpha1"},
		"pubsub.yaml":       {"pubsub.yaml", `"redisHots"`, "pubsub.redis field", "redisHost"},
	}
	for file, want := range cases {
		t.Run(file, func(t *testing.T) {
			dir := t.TempDir()
			b, err := os.ReadFile(filepath.Join("../components/testdata/bad", file))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err = loadAndApply(t, dir)
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
	if _, _, err := loadAndApply(t, filepath.Join(t.TempDir(), "nonexistent")); err == nil || !strings.Contains(err.Error(), "--resources-path") {
		t.Errorf("missing folder: %v", err)
	}
}

// The good files load at start: the stores scoped to this app, no
// embedded default beside them, and the pub/sub quickstart's pubsub.redis
// (not dialled at start).
func TestStartLoadsGoodFiles(t *testing.T) {
	svc, ps, _, err := loadAndApplyAll(t, "../components/testdata/good")
	if err != nil {
		t.Fatal(err)
	}
	if b := ps.Brokers(); len(b) != 1 || b[0].Name != "pubsub" || b[0].Type != "pubsub.redis" {
		t.Errorf("brokers %+v; want the quickstart's pubsub", b)
	}
	var names []string
	for _, s := range svc.Stores() {
		names = append(names, s.Name+" "+s.Type)
	}
	if got := strings.Join(names, ", "); got != "cache state.in-memory, statestore state.redis" {
		t.Errorf("stores %s; want cache and statestore (otherstore is scoped to another app; no default)", got)
	}
}

// A store that fails to build is left out at start, with an error in the
// log, when its Component sets ignoreErrors; without it the sidecar does
// not start.
func TestStartIgnoreErrors(t *testing.T) {
	bad := `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  ignoreErrors: false
  metadata:
  - name: redisHost
    value: localhost:6379
  - name: ttlInSeconds
    value: soon
`
	for _, ignore := range []bool{false, true} {
		dir := t.TempDir()
		y := bad
		if ignore {
			y = strings.Replace(y, "ignoreErrors: false", "ignoreErrors: true", 1)
		}
		if err := os.WriteFile(filepath.Join(dir, "stores.yaml"), []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cache.yaml"), memoryYAML("cache"), 0o644); err != nil {
			t.Fatal(err)
		}
		svc, logs, err := loadAndApply(t, dir)
		if !ignore {
			if err == nil || !strings.Contains(err.Error(), "ttlInSeconds") {
				t.Errorf("without ignoreErrors: %v; want the store's error", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("with ignoreErrors: %v", err)
		}
		if got := svc.Stores(); len(got) != 1 || got[0].Name != "cache" {
			t.Errorf("stores %v; want only cache (no embedded default: a store Component exists)", got)
		}
		if _, err := svc.Get(t.Context(), "statestore", "k"); !errors.Is(err, state.ErrStoreNotFound) {
			t.Errorf("the store left out answers %v", err)
		}
		if !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "ignoreErrors") || !strings.Contains(logs, "ttlInSeconds") || !strings.Contains(logs, "stores.yaml") {
			t.Errorf("log %q; want an error naming the store's file, ignoreErrors and the cause", logs)
		}
	}
}
