package reload

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// fakeType is a component type handler that records what it is handed.
type fakeType struct {
	checked []string
	applied []placed
}

func (f *fakeType) check(_ context.Context, c components.Component) error {
	f.checked = append(f.checked, c.Metadata.Name)
	return nil
}
func (f *fakeType) start(context.Context, Targets, []placed) error { return nil }
func (f *fakeType) apply(_ context.Context, cs []placed, _ bool)   { f.applied = cs }
func (f *fakeType) report(*Status)                                 {}

// newComponents is the Components' reconciler of app "front", its state
// stores on a fake handler.
func newComponents() (*componentKind, *fakeType) {
	f := &fakeType{}
	return newComponentKind("front", "", slog.New(slog.DiscardHandler), map[string]componentType{"state": f}), f
}

// put stages and commits d, as the differ does with a version it takes.
func put(t *testing.T, k reconciler, d doc) {
	t.Helper()
	if _, err := k.stage(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if err := k.commit(d.key); err != nil {
		t.Fatal(err)
	}
}

// A new version of a source is staged against the Components in force of
// the other sources: names are unique across all Components, whatever
// their type; what applies to another app is not built.
func TestComponentStage(t *testing.T) {
	inForce := docOf("a.yaml", memoryYAML("statestore"))
	cases := []struct {
		name string
		d    doc
		want string // in the error; "": taken
		n    int
	}{
		{"new name", docOf("b.yaml", memoryYAML("cache")), "", 1},
		{"a name in force in another source", docOf("b.yaml", memoryYAML("statestore")), "also defined in a.yaml; names must be unique", 0},
		{"a name in force, of another type", docOf("b.yaml", resources.RedisYAML("statestore", "127.0.0.1:1")), "names must be unique", 0},
		{"a name twice in one source", docOf("b.yaml", memoryYAML("cache"), memoryYAML("cache")), "names must be unique", 0},
		{"the names of the source's version in force", docOf("a.yaml", memoryYAML("statestore", "keyPrefix", "name")), "", 1},
		{"no Component", docOf("b.yaml"), "", 0},
		{"not YAML", docOf("b.yaml", []byte("kind: [")), "not valid YAML", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, _ := newComponents()
			put(t, k, inForce)
			n, err := k.stage(context.Background(), tc.d)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v; want one naming %q", err, tc.want)
			case n != tc.n:
				t.Errorf("n = %d, want %d", n, tc.n)
			}
		})
	}
}

// Each Component that applies to this app is checked and applied by the
// handler of its type's family, with the source it came from; a Component
// of another app is neither.
func TestComponentTypes(t *testing.T) {
	k, f := newComponents()
	scoped := func(name, app string) []byte { return append(memoryYAML(name), "scopes: ["+app+"]\n"...) }
	d := docOf("a.yaml", scoped("mine", "front"), scoped("theirs", "back"))
	put(t, k, d)
	k.apply(context.Background(), false)
	if !slices.Equal(f.checked, []string{"mine"}) {
		t.Errorf("checked %v, want [mine]", f.checked)
	}
	if len(f.applied) != 1 || f.applied[0].comp.Metadata.Name != "mine" || f.applied[0].source != "a.yaml" || f.applied[0].version != d.version {
		t.Errorf("applied %+v; want mine, from a.yaml at its version", f.applied)
	}
}

// A Component whose type has no handler is refused, not left without
// effect.
func TestComponentTypeWithoutHandler(t *testing.T) {
	k := newComponentKind("front", "", slog.New(slog.DiscardHandler), map[string]componentType{})
	_, err := k.stage(context.Background(), docOf("a.yaml", memoryYAML("cache")))
	if err == nil || !strings.Contains(err.Error(), `type "state.in-memory" is not handled`) {
		t.Errorf("error %v; want one naming the type", err)
	}
}

// A staged version is in force once committed, and forgotten when dropped;
// a removed source's Components go.
func TestComponentCommitDropRemove(t *testing.T) {
	k, f := newComponents()
	names := func() []string {
		k.apply(context.Background(), false)
		var out []string
		for _, p := range f.applied {
			out = append(out, p.comp.Metadata.Name)
		}
		return out
	}
	put(t, k, docOf("a.yaml", memoryYAML("statestore")))
	if _, err := k.stage(context.Background(), docOf("a.yaml", memoryYAML("cache"))); err != nil {
		t.Fatal(err)
	}
	if got := names(); !slices.Equal(got, []string{"statestore"}) {
		t.Errorf("staged: in force %v, want [statestore]", got)
	}
	k.drop("a.yaml")
	if err := k.commit("a.yaml"); err != nil { // nothing staged: nothing changes
		t.Fatal(err)
	}
	if got := names(); !slices.Equal(got, []string{"statestore"}) {
		t.Errorf("dropped: in force %v, want [statestore]", got)
	}
	put(t, k, docOf("b.yaml", memoryYAML("cache")))
	k.remove("a.yaml")
	if got := names(); !slices.Equal(got, []string{"cache"}) {
		t.Errorf("a.yaml removed: in force %v, want [cache]", got)
	}
}
