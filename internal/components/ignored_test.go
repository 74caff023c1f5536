package components

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/pkg/state"
)

// A Component as Dapr's documentation writes it, with every field of the
// schema.
const daprComponent = `apiVersion: dapr.io/v1alpha1
kind: Component
auth:
  secretStore: kubernetes
metadata:
  name: statestore
  namespace: production
spec:
  type: state.redis
  version: v1
  initTimeout: 1m
  ignoreErrors: false
  metadata:
  - name: redisHost
    value: localhost:6379
scopes:
- front
`

// Dapr's fields without effect here load, and are listed by file and
// component so the sidecar can say so once.
func TestIgnoredFieldsAreListed(t *testing.T) {
	comps, err := Parse([]byte(daprComponent), "statestore.yaml")
	if err != nil {
		t.Fatalf("a Dapr component does not load: %v", err)
	}
	want := []string{
		`statestore.yaml: component "statestore": spec.initTimeout`,
		`statestore.yaml: component "statestore": auth`,
		`statestore.yaml: component "statestore": metadata.namespace "production"`,
	}
	// A standalone sidecar has no namespace, and no secret stores; a
	// kubernetes one has its own namespace, and the kubernetes secret
	// store auth names.
	if got := Ignored(comps, ""); !slices.Equal(got, want) {
		t.Errorf("standalone, ignored\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := Ignored(comps, "default"); !slices.Equal(got, []string{want[0], want[2]}) {
		t.Errorf("in namespace default, ignored\n%s\nwant initTimeout and the namespace", strings.Join(got, "\n"))
	}
	if got := Ignored(comps, "production"); !slices.Equal(got, want[:1]) {
		t.Errorf("in the component's own namespace: %v; want initTimeout only", got)
	}
	vault, err := Parse([]byte(strings.Replace(daprComponent, "secretStore: kubernetes", "secretStore: vault", 1)), "statestore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := Ignored(vault, "production"); !slices.Equal(got, want[:2]) {
		t.Errorf("auth naming another secret store: %v; want initTimeout and auth", got)
	}
	plainComps, err := Parse([]byte(plain()), "plain.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := Ignored(plainComps, "default"); len(got) != 0 {
		t.Errorf("a component using only what applies lists %v", got)
	}
}

// plain is daprComponent without the fields that have no effect here.
func plain() string {
	return strings.NewReplacer("auth:\n  secretStore: kubernetes\n", "", "  namespace: production\n", "", "  initTimeout: 1m\n", "").Replace(daprComponent)
}

// A store that fails to build is left out, with an error in the log, when
// its Component sets ignoreErrors; without it the sidecar does not start.
func TestIgnoreErrors(t *testing.T) {
	bad := strings.Replace(plain(), "value: localhost:6379", "value: localhost:6379\n  - name: ttlInSeconds\n    value: soon", 1)
	good := strings.NewReplacer("name: statestore", "name: cache", "type: state.redis", "type: state.in-memory", "  - name: redisHost\n    value: localhost:6379\n", "").Replace(plain())
	for _, ignore := range []bool{false, true} {
		y := bad + "---\n" + good
		if ignore {
			y = strings.Replace(y, "ignoreErrors: false", "ignoreErrors: true", 1)
		}
		comps, err := Parse([]byte(y), "stores.yaml")
		if err != nil || len(comps) != 2 {
			t.Fatalf("%d components, %v", len(comps), err)
		}
		var logs bytes.Buffer
		svc, err := StateService(comps, "front", "", true, slog.New(slog.NewTextHandler(&logs, nil)))
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
			t.Errorf("stores %v; want only cache", got)
		}
		if _, err := svc.Get(t.Context(), "statestore", "k"); !errors.Is(err, state.ErrStoreNotFound) {
			t.Errorf("the store left out answers %v", err)
		}
		if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "ignoreErrors") || !strings.Contains(l, "ttlInSeconds") || !strings.Contains(l, "stores.yaml") {
			t.Errorf("log %q; want an error naming the store's file, ignoreErrors and the cause", l)
		}
		_ = svc.Close()
	}
}
