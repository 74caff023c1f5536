package calculator_test

import (
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tandem-run/tandem/internal/testutil/chromium"
	"github.com/tandem-run/tandem/internal/testutil/proc"
)

var updatePNG = flag.Bool("update-png", false, "write the mesh dashboard's screenshot to docs/dashboard.png")

// TestMeshDashboard runs the calculator with -dashboard and drives the
// dashboard's page in headless Chromium: the five apps healthy, an edge
// from the front end to each operator with a rate above zero; one app's
// sidecar stopped (SIGSTOP) shows unreachable within a bound, a call to
// it that fails shows in its edge's error rate, and it is healthy again
// once it goes on. Screenshots go to the temporary folder.
func TestMeshDashboard(t *testing.T) {
	chromePath := chromium.Need(t)
	dashPort := proc.For(t).FreePort()
	base, _ := startRunner(t, "-dashboard", "-dashboard-port", strconv.Itoa(dashPort))
	dash := "http://127.0.0.1:" + strconv.Itoa(dashPort)
	ops := []string{"add", "subtract", "multiply", "divide"}
	for _, op := range ops {
		for range 3 {
			if code, body := post(t, base+"/calculate/"+op, `{"operandOne":"52","operandTwo":"34"}`); code != http.StatusOK {
				t.Fatalf("%s: %d %s", op, code, body)
			}
		}
	}

	ctx := chromium.Start(t, chromePath, 90*time.Second)
	screenshot := func(name string) { chromium.Screenshot(t, ctx, name) }
	edge := func(op, attrs string) string {
		return `document.querySelector('#edges tr[data-kind="invoke"][data-caller="calculator-front-end"][data-callee="` + op + `app"]` + attrs + `')`
	}
	healthy := `document.querySelectorAll('#apps tbody tr[data-health="healthy"]').length === 5`
	edges := healthy
	for _, op := range ops {
		// Three calls each, at a rate above zero.
		edges += ` && ` + edge(op, `[data-calls="3"][data-errors="0"]`) + ` !== null && parseFloat(` + edge(op, "") + `.children[4].textContent) > 0`
	}
	start := time.Now()
	if err := chromedp.Run(ctx, chromedp.Navigate(dash+"/"), chromium.Poll(edges)); err != nil {
		t.Fatalf("the dashboard's page: %v (page: %s)", err, chromium.PageText(ctx))
	}
	t.Logf("the page showed five healthy apps and four edges %v after its navigation started", time.Since(start).Round(time.Millisecond))
	screenshot("calculator-dashboard.png")

	// divideapp's sidecar stops answering: unreachable on the page.
	pid := sidecarPID(t, dash, "divideapp")
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cont := func() { _ = syscall.Kill(pid, syscall.SIGCONT) }
	t.Cleanup(cont) // before the runner stops
	start = time.Now()
	if err := chromedp.Run(ctx, chromium.Poll(`document.querySelector('#apps tr[data-app-id="divideapp"][data-health="unreachable"]') !== null`)); err != nil {
		t.Fatalf("divideapp not shown unreachable once its sidecar stopped: %v (page: %s)", err, chromium.PageText(ctx))
	}
	t.Logf("the page showed divideapp unreachable %v after its sidecar stopped", time.Since(start).Round(time.Millisecond))

	// A division now fails (the front end gives up after 10 s), and shows
	// in the error rate of front end → divideapp once it goes on.
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Post(base+"/calculate/divide", "application/json", strings.NewReader(`{"operandOne":"1","operandTwo":"2"}`))
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("a division with divideapp's sidecar stopped answered 200 %s", b)
		}
	}
	cont()
	if err := chromedp.Run(ctx, chromium.Poll(healthy+` && `+edge("divide", `[data-calls="4"][data-errors="1"]`)+` !== null && `+
		edge("divide", "")+`.children[5].className === "failing"`)); err != nil {
		t.Fatalf("the failed division not shown in the error rate: %v (page: %s)", err, chromium.PageText(ctx))
	}
	screenshot("calculator-dashboard-error.png")
	if *updatePNG { // the top of the page (apps, map and edges), for the docs
		var png []byte
		if err := chromedp.Run(ctx, chromedp.EmulateViewport(1280, 960), chromedp.Sleep(500*time.Millisecond), chromedp.CaptureScreenshot(&png)); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "dashboard.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// sidecarPID is the pid of appID's sidecar, as the dashboard lists it.
func sidecarPID(t *testing.T, dash, appID string) int {
	t.Helper()
	resp, err := http.Get(dash + "/api/apps")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Apps []struct {
			AppID string `json:"appId"`
			PID   int    `json:"pid"`
		} `json:"apps"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	for _, a := range body.Apps {
		if a.AppID == appID && a.PID > 0 {
			return a.PID
		}
	}
	t.Fatalf("no app %s listed: %+v", appID, body.Apps)
	return 0
}
