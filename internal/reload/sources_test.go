package reload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tandem-run/tandem/internal/resiliency"
	"github.com/tandem-run/tandem/pkg/state"
)

// docOf is a version of the file key holding body, as files.go reads it.
func docOf(key string, body ...[]byte) doc {
	var b []byte
	for i, part := range body {
		if i > 0 {
			b = append(b, "---\n"...)
		}
		b = append(b, part...)
	}
	sum := sha256.Sum256(b)
	return doc{key: key, version: "sha256:" + hex.EncodeToString(sum[:]), body: b}
}

// resiliencyYAML is a Resiliency resource giving calls to app a constant
// retry policy of retries.
func resiliencyYAML(name, app string, retries int, scopes ...string) []byte {
	b := fmt.Appendf(nil, `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: %s
spec:
  policies:
    retries:
      quick: {policy: constant, duration: 1ms, maxRetries: %d}
  targets:
    apps:
      %s: {retry: quick}
`, name, retries, app)
	if len(scopes) > 0 {
		b = fmt.Appendf(b, "scopes: [%s]\n", strings.Join(scopes, ", "))
	}
	return b
}

// testMetrics are metrics on no registry, of the kinds of the sidecar.
func testMetrics() *metrics {
	m := newMetrics(nil)
	for _, k := range []string{kindComponent, kindResiliency, kindConfiguration, kindFile} {
		m.add(k)
	}
	return m
}

// files is a differ reading the folders with Components (their stores on
// svc) and Resiliency resources (their policies on sw), as the sidecar of
// app "front" does.
type files struct {
	diff  *sources
	comps *componentKind
	res   *resiliencyKind
	m     *metrics
	svc   *state.Service
	sw    *resiliency.Switch
}

func newFiles(t *testing.T) *files {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	f := &files{m: testMetrics(), svc: state.NewService("front", ""), sw: resiliency.NewSwitch(nil, nil)}
	t.Cleanup(func() { _ = f.svc.Close() })
	f.comps = newComponentKind("front", "", log, map[string]componentType{"state": newStores(nil, log, f.m, time.Second, false)})
	f.res = newResiliencyKind("front", log)
	f.diff = newSources(map[origin]reader{originFiles: {kinds: []reconciler{f.comps, f.res}}}, f.m, log)
	return f
}

// start loads docs and puts them in force, as Load and Apply do.
func (f *files) start(t *testing.T, docs ...doc) {
	t.Helper()
	ctx := context.Background()
	if err := f.diff.load(ctx, originFiles, byKey(docs...)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []reconciler{f.comps, f.res} {
		if err := k.start(ctx, Targets{State: f.svc, Resiliency: f.sw}); err != nil {
			t.Fatal(err)
		}
	}
}

// update sends the folders' new content as Run does, and then applies
// what is in force (as Run does after a change of any source).
func (f *files) update(docs ...doc) {
	ctx := context.Background()
	if f.diff.handle(ctx, update{origin: originFiles, docs: byKey(docs...)}) {
		f.diff.retry(ctx)
	}
	f.comps.apply(ctx, false)
	f.res.apply(ctx, false)
}

func byKey(docs ...doc) map[string]doc {
	out := map[string]doc{}
	for _, d := range docs {
		out[d.key] = d
	}
	return out
}

func (f *files) keyPrefix(store string) (string, bool) {
	for _, s := range f.svc.Stores() {
		if s.Name == store {
			return s.KeyPrefix, true
		}
	}
	return "", false
}

func (f *files) retries(app string) int {
	if p := f.sw.Policies().App(app); p != nil && p.Retry != nil {
		return p.Retry.MaxRetries
	}
	return 0
}

func (f *files) refusal(source string) string {
	var st Status
	f.diff.report(&st)
	for _, r := range st.Rejected {
		if r.Source == source {
			return r.Error
		}
	}
	return ""
}

// A source holding a Component and a Resiliency resource is taken whole:
// one bad part refuses it all, and the version in force stays, both parts.
// Once what it clashed with is gone, it is taken.
func TestSourceTakenWhole(t *testing.T) {
	good := docOf("b.yaml", memoryYAML("cache"), resiliencyYAML("b", "addapp", 1))
	cases := []struct {
		name  string
		bad   doc
		want  string
		alone bool // bad on its own, not for what a.yaml holds
	}{
		{"bad Component", docOf("b.yaml", memoryYAML("cache", "keyPrefix", "name", "maxTransactionOperations", "0"), resiliencyYAML("b", "addapp", 3)), "maxTransactionOperations", true},
		{"Component name clash", docOf("b.yaml", memoryYAML("statestore", "keyPrefix", "name"), resiliencyYAML("b", "addapp", 3)), "names must be unique", false},
		{"Resiliency clash", docOf("b.yaml", memoryYAML("cache", "keyPrefix", "name"), resiliencyYAML("b", "addapp", 3), resiliencyYAML("b2", "calc", 1)), "two Resiliency resources", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFiles(t)
			a := docOf("a.yaml", memoryYAML("statestore"), resiliencyYAML("a", "calc", 2))
			f.start(t, a, good)
			f.update(a, tc.bad)
			if got := f.refusal("b.yaml"); !strings.Contains(got, tc.want) {
				t.Errorf("refusal %q; want it to name %q", got, tc.want)
			}
			if p, ok := f.keyPrefix("cache"); !ok || p != "" || f.retries("addapp") != 1 {
				t.Errorf("after a refused version: cache %v (keyPrefix %q), addapp's retries %d; want the version in force, both parts", ok, p, f.retries("addapp"))
			}
			if n := testutil.ToFloat64(f.m.reloads.WithLabelValues(kindComponent, "rejected")); n != 1 {
				t.Errorf("counted %v rejections of Components, want 1", n)
			}
			// a.yaml emptied: b.yaml is tried again, and taken unless it is
			// bad on its own.
			f.update(docOf("a.yaml"), tc.bad)
			taken := f.refusal("b.yaml") == "" && f.retries("addapp") == 3
			if taken == tc.alone {
				t.Errorf("once a.yaml is empty: refusal %q, addapp's retries %d; taken %v, want %v", f.refusal("b.yaml"), f.retries("addapp"), taken, !tc.alone)
			}
		})
	}
}

// An origin of one object (the Configuration --config names) that loses
// it refuses the deletion: the one read last stays in force, and the
// object is taken again once it is created again.
func TestOneObjectDeletedStays(t *testing.T) {
	ctx := context.Background()
	const o origin = "--config (the API server's Configuration)"
	k := newConfigurationKind("", slog.New(slog.DiscardHandler))
	m := testMetrics()
	diff := newSources(map[origin]reader{o: {kinds: []reconciler{k}, one: "appconfig"}}, m, slog.New(slog.DiscardHandler))
	obj := func(version, rate string) doc {
		return doc{key: "Configuration default/appconfig", kind: kindConfiguration, name: "appconfig", version: version,
			body: configYAML("appconfig", "  tracing:\n    samplingRate: \""+rate+"\"\n")}
	}
	if err := diff.load(ctx, o, byKey(obj("1", "1"))); err != nil {
		t.Fatal(err)
	}
	if diff.handle(ctx, update{origin: o, docs: map[string]doc{}}) {
		t.Error("a deletion changed what is in force")
	}
	var st Status
	diff.report(&st)
	if len(st.Rejected) != 1 || st.Rejected[0].Source != string(o) || st.Rejected[0].Kind != kindConfiguration ||
		!strings.Contains(st.Rejected[0].Error, `Configuration "appconfig" was deleted; the one read last stays in force`) {
		t.Errorf("rejected %+v", st.Rejected)
	}
	if ts, _ := k.current().TracingSettings(); k.current() == nil || ts.SamplingRate != 1 {
		t.Errorf("in force after the deletion: %+v", k.current())
	}
	if n := testutil.ToFloat64(m.reloads.WithLabelValues(kindConfiguration, "rejected")); n != 1 {
		t.Errorf("counted %v rejections of Configurations, want 1", n)
	}
	diff.handle(ctx, update{origin: o, docs: byKey(obj("2", "0.5"))})
	st = Status{}
	diff.report(&st)
	if ts, _ := k.current().TracingSettings(); len(st.Rejected) != 0 || ts.SamplingRate != 0.5 {
		t.Errorf("created again: rejected %+v, sampling rate %v", st.Rejected, ts.SamplingRate)
	}
}
