package reload

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/acl"
	"github.com/tandem-run/tandem/internal/config"
	"github.com/tandem-run/tandem/internal/telemetry"
	"github.com/tandem-run/tandem/internal/testutil/syncbuf"
)

func configYAML(name, spec string) []byte {
	return []byte("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: " + name + "\nspec:\n" + spec)
}

// A version of the Configuration is staged whole: its tracing settings
// are checked with it.
func TestConfigurationStage(t *testing.T) {
	cases := []struct {
		name string
		d    doc
		want string // in the error; "": taken
	}{
		{"tracing", docOf("config.yaml", configYAML("appconfig", "  tracing:\n    samplingRate: \"1\"\n    stdout: true\n")), ""},
		{"a bad sampling rate", docOf("config.yaml", configYAML("appconfig", "  tracing:\n    samplingRate: \"2\"\n")), "samplingRate"},
		{"a bad OTLP protocol", docOf("config.yaml", configYAML("appconfig", "  tracing:\n    otel:\n      endpointAddress: collector:4317\n      protocol: udp\n")), "protocol"},
		{"two Configurations", docOf("config.yaml", configYAML("a", "  tracing: {}\n"), configYAML("b", "  tracing: {}\n")), "more than one Configuration"},
		{"no Configuration", docOf("config.yaml", memoryYAML("cache")), "no document of kind Configuration"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := newConfigurationKind("", slog.New(slog.DiscardHandler))
			n, err := k.stage(context.Background(), tc.d)
			switch {
			case tc.want == "" && (err != nil || n != 1):
				t.Fatalf("refused: %d, %v", n, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v; want one naming %q", err, tc.want)
			}
		})
	}
}

// A refused version changes nothing: neither one that does not check
// (dropped), nor one whose tracing the exporter refuses (its commit
// fails). A version committed switches tracing, then access control on
// apply.
func TestConfigurationCommit(t *testing.T) {
	ctx := context.Background()
	k := newConfigurationKind("", slog.New(slog.DiscardHandler))
	v1 := docOf("config.yaml", configYAML("appconfig", "  tracing:\n    samplingRate: \"1\"\n    stdout: true\n  accessControl:\n    defaultAction: deny\n"))
	put(t, k, v1)
	ts, err := k.current().TracingSettings()
	if err != nil {
		t.Fatal(err)
	}
	tracing, err := telemetry.NewTracing(ts, telemetry.Options{AppID: "front", Reloadable: true, Drain: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tracing.Shutdown(context.Background()) })
	sw := &acl.Switch{}
	if err := k.start(ctx, Targets{Tracing: tracing, ACL: sw}); err != nil {
		t.Fatal(err)
	}
	inForce := func() string {
		var st Status
		k.report(&st)
		if len(st.InUse) != 1 {
			t.Fatalf("in use %+v", st.InUse)
		}
		return st.InUse[0].Version
	}
	if !tracing.Enabled() || hopStatus(sw) != 403 || inForce() != v1.version {
		t.Fatalf("at start: tracing %v, access control %d", tracing.Enabled(), hopStatus(sw))
	}

	if _, err := k.stage(ctx, docOf("config.yaml", configYAML("appconfig", "  tracing:\n    samplingRate: \"2\"\n"))); err == nil {
		t.Fatal("a bad sampling rate staged")
	}
	k.drop("config.yaml")
	noPort := docOf("config.yaml", configYAML("appconfig", "  tracing:\n    samplingRate: \"1\"\n    otel:\n      endpointAddress: collector\n      protocol: grpc\n"))
	if _, err := k.stage(ctx, noPort); err != nil {
		t.Fatal(err)
	}
	if err := k.commit("config.yaml"); err == nil || !strings.Contains(err.Error(), "collector") {
		t.Errorf("commit of an endpoint the exporter refuses: %v; want its error", err)
	}
	k.apply(ctx, false)
	if !tracing.Enabled() || hopStatus(sw) != 403 || inForce() != v1.version {
		t.Errorf("after refused versions: tracing %v, access control %d; want the version in force", tracing.Enabled(), hopStatus(sw))
	}

	v2 := docOf("config.yaml", configYAML("appconfig", "  tracing:\n    samplingRate: \"0\"\n"))
	put(t, k, v2)
	if tracing.Enabled() || hopStatus(sw) != 403 {
		t.Errorf("committed: tracing %v, access control %d; want tracing off, access control on apply", tracing.Enabled(), hopStatus(sw))
	}
	k.apply(ctx, false)
	if hopStatus(sw) != 204 || inForce() != v2.version {
		t.Errorf("applied: access control %d; want the new version's", hopStatus(sw))
	}
}

// The HotReload feature is read at start only: a version that changes it
// is taken, with a warning saying so.
func TestConfigurationHotReloadWarning(t *testing.T) {
	ctx := context.Background()
	var logs syncbuf.Buffer
	k := newConfigurationKind("", slog.New(slog.NewTextHandler(&logs, nil)))
	put(t, k, docOf("config.yaml", configYAML("appconfig", "  features:\n  - name: HotReload\n    enabled: true\n")))
	tracing, err := telemetry.NewTracing(config.TracingSettings{}, telemetry.Options{AppID: "front", Reloadable: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.start(ctx, Targets{Tracing: tracing, ACL: &acl.Switch{}}); err != nil {
		t.Fatal(err)
	}
	put(t, k, docOf("config.yaml", configYAML("appconfig", "  features:\n  - name: HotReload\n    enabled: true\n  tracing: {}\n")))
	if strings.Contains(logs.String(), "read at start only") {
		t.Errorf("a warning for a version that keeps the feature:\n%s", logs.String())
	}
	put(t, k, docOf("config.yaml", configYAML("appconfig", "  features:\n  - name: HotReload\n    enabled: false\n")))
	if on, _ := k.current().HotReload(); on || !strings.Contains(logs.String(), "HotReload changed; it is read at start only") {
		t.Errorf("feature %v, log:\n%s", on, logs.String())
	}
}
