package reload

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/resiliency"
)

// A new version of a source is staged against the policies in force of
// the other sources: a target given a policy of a kind twice is refused.
func TestResiliencyStage(t *testing.T) {
	inForce := docOf("a.yaml", resiliencyYAML("a", "addapp", 1))
	cases := []struct {
		name string
		d    doc
		want string // in the error; "": taken
		n    int
	}{
		{"another target", docOf("b.yaml", resiliencyYAML("b", "calc", 2)), "", 1},
		{"a target in force twice", docOf("b.yaml", resiliencyYAML("b", "addapp", 2)), "two Resiliency resources", 0},
		{"a target twice in one source", docOf("b.yaml", resiliencyYAML("b", "calc", 2), resiliencyYAML("c", "calc", 3)), "two Resiliency resources", 0},
		{"the target of the source's version in force", docOf("a.yaml", resiliencyYAML("a", "addapp", 3)), "", 1},
		{"a target in force, scoped to another app", docOf("b.yaml", resiliencyYAML("b", "addapp", 2, "back")), "", 1},
		{"a policy that does not exist", docOf("b.yaml", []byte(strings.Replace(string(resiliencyYAML("b", "calc", 2)), "{retry: quick}", "{retry: slow}", 1))), "slow", 0},
		{"no Resiliency", docOf("b.yaml", memoryYAML("cache")), "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := newResiliencyKind("front", slog.New(slog.DiscardHandler))
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

// The policies of the resources in force are on the switch after apply,
// whole; a staged or dropped version changes nothing; a removed source's
// policies go. Status lists the resources of this app.
func TestResiliencyApply(t *testing.T) {
	ctx := context.Background()
	k := newResiliencyKind("front", slog.New(slog.DiscardHandler))
	sw := resiliency.NewSwitch(nil, nil)
	retries := func() int {
		if p := sw.Policies().App("addapp"); p != nil && p.Retry != nil {
			return p.Retry.MaxRetries
		}
		return 0
	}
	put(t, k, docOf("a.yaml", resiliencyYAML("a", "addapp", 1)))
	put(t, k, docOf("b.yaml", resiliencyYAML("b", "calc", 1, "back")))
	if err := k.start(ctx, Targets{Resiliency: sw}); err != nil {
		t.Fatal(err)
	}
	if retries() != 1 {
		t.Fatalf("at start: %d retries, want 1", retries())
	}
	var st Status
	k.report(&st)
	if len(st.InUse) != 1 || st.InUse[0].Name != "a" || st.InUse[0].Source != "a.yaml" {
		t.Errorf("in use %+v; want a only (b is scoped to another app)", st.InUse)
	}
	if _, err := k.stage(ctx, docOf("a.yaml", resiliencyYAML("a", "addapp", 3))); err != nil {
		t.Fatal(err)
	}
	k.apply(ctx, false)
	k.drop("a.yaml")
	k.apply(ctx, false)
	if retries() != 1 {
		t.Errorf("a staged, then dropped, version: %d retries, want 1", retries())
	}
	put(t, k, docOf("a.yaml", resiliencyYAML("a", "addapp", 3)))
	k.apply(ctx, true)
	if retries() != 1 {
		t.Errorf("a retry applied a new version: it has nothing to retry")
	}
	k.apply(ctx, false)
	if retries() != 3 {
		t.Errorf("a committed version: %d retries, want 3", retries())
	}
	k.remove("a.yaml")
	k.apply(ctx, false)
	if retries() != 0 {
		t.Errorf("a removed source: %d retries, want none", retries())
	}
}
