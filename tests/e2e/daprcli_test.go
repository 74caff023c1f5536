package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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

// cliRun is a stand-in for a running `dapr run` (the CLI cannot be built
// here): a shell in a process group of its own that starts, for each app, a
// sidecar with the CLI's arguments and the app (sleep), and on SIGTERM or
// SIGINT stops them and exits, as the CLI does. The metadata the CLI sets
// once the app runs is set by run, through clistandin.Put.
type cliRun struct {
	*proc.Proc
	apps map[string]*cliApp
}

type cliApp struct {
	sidecar *sidecar
	pid     int // the app's
	ports   clistandin.Ports
}

// daprRun starts a cliRun of the apps, with the CLI's arguments of variant;
// with runFile, as `dapr run -f` of that run file.
func (w *world) daprRun(variant, runFile string, appIDs ...string) *cliRun {
	w.t.Helper()
	pt := proc.For(w.t)
	home := daprHome(w.t)
	r := &cliRun{apps: map[string]*cliApp{}}
	var script strings.Builder
	script.WriteString("trap 'kill -TERM $(jobs -p) 2>/dev/null; wait; exit 0' TERM INT\n")
	for _, id := range appIDs {
		p := clistandin.Ports{HTTP: pt.FreePort(), GRPC: pt.FreePort(), Metrics: pt.FreePort(), Internal: pt.FreePort()}
		r.apps[id] = &cliApp{ports: p}
		script.WriteString("'" + sidecarBin + "'")
		for _, a := range clistandin.RunArgs(home, id, p)[variant] {
			script.WriteString(" '" + a + "'")
		}
		script.WriteString(" &\nsleep 600 &\necho \"app " + id + " $!\"\n")
	}
	script.WriteString("wait\n")
	// setsid: the CLI's process group, which `dapr stop -f` signals.
	r.Proc = pt.Start("dapr run (stand-in)", "setsid", []string{"TANDEM_REGISTRY_DIR=" + w.registry}, "bash", "-c", script.String())
	for id, a := range r.apps {
		pt.WaitTCP("127.0.0.1:"+itoa(a.ports.HTTP), listenWait)
		a.sidecar = &sidecar{appID: id, httpPort: a.ports.HTTP, grpcPort: a.ports.GRPC, url: "http://127.0.0.1:" + itoa(a.ports.HTTP)}
		for _, line := range strings.Split(r.Out.String(), "\n") {
			if pid, ok := strings.CutPrefix(line, "app "+id+" "); ok {
				a.pid, _ = strconv.Atoi(pid)
			}
		}
		if a.pid == 0 {
			w.t.Fatalf("the stand-in CLI did not say the pid of app %s:\n%s", id, r.Out.String())
		}
		// What the CLI puts once the app runs.
		meta := [][2]string{{"cliPID", itoa(r.Cmd.Process.Pid)}, {"appPID", itoa(a.pid)}, {"appCommand", "sleep 600"}}
		if runFile != "" {
			meta = append(meta, [2]string{"runTemplatePath", runFile}, [2]string{"runTemplateName", filepath.Base(filepath.Dir(runFile))})
		}
		for _, kv := range meta {
			if err := clistandin.Put(a.ports.HTTP, id, "", kv[0], kv[1]); err != nil {
				w.t.Fatal(err)
			}
		}
	}
	return r
}

// listed is `dapr list`, limited to the apps of r.
func (r *cliRun) listed(t *testing.T) map[string]clistandin.App {
	t.Helper()
	all, err := clistandin.List(filepath.Base(sidecarBin))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]clistandin.App{}
	for _, a := range all {
		if _, ok := r.apps[a.AppID]; ok {
			out[a.AppID] = a
		}
	}
	return out
}

// gone waits until no process has pid.
func gone(t *testing.T, what string, pid int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still runs", what, pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDaprListAndStop: `dapr list` finds a sidecar the CLI started, with
// the CLI's and the app's pids and the app's command from its metadata, and
// `dapr stop --app-id` stops the CLI, which stops the sidecar and the app.
// The CLI's calls are played by clistandin; the sidecar is real.
func TestDaprListAndStop(t *testing.T) {
	w := newWorld(t)
	run := w.daprRun("dapr run, older runtime", "", "standin-checkout")
	app := run.apps["standin-checkout"]
	row, ok := run.listed(t)["standin-checkout"]
	if !ok {
		t.Fatalf("dapr list does not list the app")
	}
	want := clistandin.App{AppID: "standin-checkout", HTTPPort: app.ports.HTTP, GRPCPort: app.ports.GRPC, Command: "sleep 600",
		DaprdPID: row.DaprdPID, CLIPID: run.Cmd.Process.Pid, AppPID: app.pid}
	if row != want || row.DaprdPID == 0 {
		t.Errorf("dapr list:\n got %+v\nwant %+v", row, want)
	}
	if err := clistandin.Stop([]clistandin.App{row}, "standin-checkout"); err != nil {
		t.Fatal(err)
	}
	if code := proc.For(t).ExitCode(run.Proc, 15*time.Second); code != 0 {
		t.Errorf("the stand-in CLI exited %d", code)
	}
	gone(t, "the sidecar", row.DaprdPID)
	gone(t, "the app", row.AppPID)
	if !strings.Contains(run.Out.String(), "sidecar stopped") {
		t.Errorf("the sidecar did not stop cleanly:\n%s", run.Out.String())
	}
}

// TestDaprStopRunFile: two apps of one run file (`dapr run -f`): `dapr stop
// --app-id` of one stops its sidecar alone (the CLI runs the other too),
// and `dapr stop -f` stops the CLI's whole process group.
func TestDaprStopRunFile(t *testing.T) {
	w := newWorld(t)
	runFile := filepath.Join(t.TempDir(), "dapr.yaml")
	run := w.daprRun("dapr run -f", runFile, "standin-a", "standin-b")
	rows := run.listed(t)
	if len(rows) != 2 || rows["standin-a"].RunTemplatePath != runFile || rows["standin-b"].CLIPID != run.Cmd.Process.Pid {
		t.Fatalf("dapr list: %+v", rows)
	}
	all := []clistandin.App{rows["standin-a"], rows["standin-b"]}
	if err := clistandin.Stop(all, "standin-b"); err != nil {
		t.Fatal(err)
	}
	gone(t, "the sidecar of standin-b", rows["standin-b"].DaprdPID)
	if rows := run.listed(t); len(rows) != 1 || rows["standin-a"].AppPID != run.apps["standin-a"].pid {
		t.Fatalf("after stopping standin-b, dapr list: %+v", rows)
	}
	if err := clistandin.StopRunFile([]clistandin.App{rows["standin-a"]}, runFile); err != nil {
		t.Fatal(err)
	}
	proc.For(t).ExitCode(run.Proc, 15*time.Second)
	for _, r := range rows {
		gone(t, "the sidecar of "+r.AppID, r.DaprdPID)
		gone(t, "the app of "+r.AppID, r.AppPID)
	}
	if n := strings.Count(run.Out.String(), "sidecar stopped"); n != 2 {
		t.Errorf("%d sidecars stopped cleanly, want 2:\n%s", n, run.Out.String())
	}
}
