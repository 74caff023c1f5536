package components

import (
	"slices"
	"strings"
	"testing"
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
