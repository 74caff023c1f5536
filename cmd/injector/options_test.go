package main

import (
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/injector"
)

// TestSidecarResourceFlags: the injector's default sidecar resources are
// bounded as the pod annotations are: a quantity past an int64, or past a
// sane maximum, is refused naming the flag.
func TestSidecarResourceFlags(t *testing.T) {
	base := []string{"--sidecar-image", "tandem/sidecar:dev", "--tls-hosts", "injector.svc"}
	o, err := parseOptions(append(base, "--sidecar-cpu-limit", "1024", "--sidecar-memory-limit", "64Ti"), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if l := o.Injector.Resources.Limits; l.Cpu().String() != "1024" || l.Memory().String() != "64Ti" {
		t.Errorf("limits %v", l)
	}
	for _, c := range []struct{ flag, v, want string }{
		{"--sidecar-cpu-request", "1e100", "a positive quantity of CPUs up to 1024"},
		{"--sidecar-cpu-limit", "0", "a positive quantity of CPUs up to 1024"},
		{"--sidecar-memory-request", "999999Ei", "a positive quantity of memory up to 64Ti"},
		{"--sidecar-memory-limit", "lots", "a positive quantity of memory up to 64Ti"},
	} {
		_, err := parseOptions(append(base, c.flag, c.v), func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), c.flag+` "`+c.v+`" is not valid; accepted: `+c.want) {
			t.Errorf("%s %s: %v", c.flag, c.v, err)
		}
	}
}

func TestNativeSidecarFlags(t *testing.T) {
	base := []string{"--sidecar-image", "tandem/sidecar:dev", "--tls-hosts", "injector.svc"}
	o, err := parseOptions(base, func(string) string { return "" })
	if err != nil || o.NativeSidecars != "auto" || o.Injector.BlockShutdown != injector.DefaultBlockShutdown {
		t.Errorf("defaults: native %q, block %s, %v", o.NativeSidecars, o.Injector.BlockShutdown, err)
	}
	for _, c := range []struct{ args, want string }{
		{"--native-sidecars=maybe", `--native-sidecars "maybe" is not valid; accepted: auto, true, false`},
		{"--sidecar-block-shutdown-duration=2h", "--sidecar-block-shutdown-duration 2h0m0s is not valid; accepted: 0s to 1h"},
		{"--sidecar-block-shutdown-duration=-1s", "--sidecar-block-shutdown-duration -1s is not valid"},
	} {
		if _, err := parseOptions(append(base, c.args), func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.args, err, c.want)
		}
	}
}
