package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/clistandin"
	"github.com/tandem-run/tandem/internal/testutil/proc"
)

// slimConfig is the config.yaml `dapr init --slim` writes.
const slimConfig = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: daprConfig
spec: {}
`

// daprHome makes a home folder as `dapr init --slim` leaves it:
// .dapr/config.yaml and an empty .dapr/components.
func daprHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".dapr", "components"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".dapr", "config.yaml"), []byte(slimConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return home
}

// cliSidecar starts a sidecar with exactly the arguments the Dapr CLI
// passes (variant of clistandin.RunArgs), on free ports.
func (w *world) cliSidecar(variant, appID string) (*sidecar, []string) {
	w.t.Helper()
	pt := proc.For(w.t)
	p := clistandin.Ports{HTTP: pt.FreePort(), GRPC: pt.FreePort(), Metrics: pt.FreePort(), Internal: pt.FreePort()}
	args, ok := clistandin.RunArgs(daprHome(w.t), appID, p)[variant]
	if !ok {
		w.t.Fatalf("no variant %q of the CLI's arguments", variant)
	}
	// The registry folder comes from the environment, so that the
	// arguments are the CLI's and nothing else.
	s := &sidecar{
		Proc:     pt.Start("sidecar "+appID, sidecarBin, []string{"TANDEM_REGISTRY_DIR=" + w.registry}, args...),
		appID:    appID,
		httpPort: p.HTTP,
		grpcPort: p.GRPC,
		url:      "http://127.0.0.1:" + itoa(p.HTTP),
	}
	pt.WaitTCP("127.0.0.1:"+itoa(p.HTTP), listenWait)
	pt.WaitTCP("127.0.0.1:"+itoa(p.GRPC), listenWait)
	return s, args
}

// TestDaprRunArguments: a sidecar started with each argument list the Dapr
// CLI v1.14 passes its runtime serves, says once which of those flags have
// no effect here, and stops cleanly on SIGTERM as `dapr stop` sends it.
func TestDaprRunArguments(t *testing.T) {
	w := newWorld(t)
	for _, variant := range []string{"dapr run, runtime 1.14 or later", "dapr run, older runtime", "dapr run -f"} {
		t.Run(variant, func(t *testing.T) {
			w := &world{t: t, registry: w.registry}
			s, args := w.cliSidecar(variant, "checkout")
			s.waitHealthy(t)
			resp, b := do(t, "GET", s.url+"/v1.0/metadata", nil, nil)
			var m struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(b, &m); err != nil || resp.StatusCode != 200 || m.ID != "checkout" {
				t.Errorf("metadata: %d %s", resp.StatusCode, b)
			}
			if err := s.Stop(sigterm, 10*time.Second); err != nil {
				t.Fatalf("SIGTERM: %v", err)
			}
			out := s.Out.String()
			if n := strings.Count(out, "flags accepted without effect"); n != 1 {
				t.Errorf("the flags without effect are logged %d times, want once:\n%s", n, out)
			}
			if !strings.Contains(out, "--placement-host-address: this sidecar has no actors") {
				t.Errorf("the log does not say --placement-host-address has no effect:\n%s", out)
			}
			if blanked := strings.Contains(strings.Join(args, " "), "  localhost:50006"); blanked != strings.Contains(out, `value after it, \"localhost:50006\"`) {
				t.Errorf("blanked scheduler flag %v, but the log says otherwise:\n%s", blanked, out)
			}
		})
	}
}
