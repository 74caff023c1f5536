package calculator_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tandem-run/tandem/internal/testutil/chromium"
	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/toolbin"
)

// spanRow is one row of the traces page's waterfall, as the page shows it.
type spanRow struct {
	Depth   int     `json:"depth"`
	Service string  `json:"service"`
	Name    string  `json:"name"`
	Kind    string  `json:"kind"`
	Left    float64 `json:"left"`  // where its bar starts, in pixels
	Right   float64 `json:"right"` // and ends
}

func (r spanRow) String() string {
	return fmt.Sprintf("%d %s %s %s", r.Depth, r.Service, r.Name, r.Kind)
}

// TestBrowserTraces runs the calculator with -traces, presses 5 2 + 3 4 =,
// and finds on the traces page the trace of the addition: the front end's
// call to its sidecar, the hop to addapp's sidecar, its receipt there and the
// call to the operator, as a waterfall of four rows with their attributes.
func TestBrowserTraces(t *testing.T) {
	chromePath := chromium.Need(t)
	// The first build of Jaeger takes minutes, longer than the runner is given
	// to start; tools/build caches it for the runner to find.
	toolbin.Path(t, "jaeger")
	tracesPort := proc.For(t).FreePort()
	base, runner := startRunner(t, "-traces", "-traces-port", strconv.Itoa(tracesPort))
	// The runner names the page beside the calculator.
	page := "http://127.0.0.1:" + strconv.Itoa(tracesPort)
	if ready := "calculator ready: " + base + "  traces: " + page + "  (Ctrl-C stops everything)"; !strings.Contains(runner.Out.String(), ready) {
		t.Fatalf("the runner did not say %q:\n%s", ready, runner.Out.String())
	}
	ctx := chromium.Start(t, chromePath, 90*time.Second)

	screenshot := func(name string) {
		var png []byte
		if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
			t.Logf("screenshot: %v", err)
			return
		}
		path := filepath.Join(os.TempDir(), name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Logf("screenshot: %v", err)
			return
		}
		t.Logf("screenshot of the traces page: %s", path)
	}

	// The row of the addition's trace, once the page lists it (it reads the
	// collector every 2 s; spans reach it within a second or so).
	const additionRow = `[...document.querySelectorAll("#traces tr.trace")].find(r =>
		r.querySelector(".root-name").textContent === "calllocal/addapp/add" &&
		r.querySelector(".span-count").textContent === "4")`
	var rows []spanRow
	var title, meta string
	err := chromedp.Run(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible("#display", chromedp.ByID),
		click("AC"), waitDisplay("0"),
		click("5"), waitDisplay("5"),
		click("2"), waitDisplay("52"),
		click("+"), waitDisplay("52"),
		click("3"), waitDisplay("3"),
		click("4"), waitDisplay("34"),
		click("="), waitDisplay("86"),

		chromedp.Navigate(page+"/"),
		chromedp.Poll(`!!(`+additionRow+`)`, nil, chromedp.WithPollingTimeout(30*time.Second)),
		chromedp.Evaluate(additionRow+`.click()`, nil),
		chromedp.Poll(`document.querySelectorAll("#waterfall .span").length === 4`, nil, chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.Text("#trace-title", &title, chromedp.ByID),
		chromedp.Text("#trace-meta", &meta, chromedp.ByID),
		chromedp.Evaluate(`[...document.querySelectorAll("#waterfall .span")].map(r => {
			const bar = r.querySelector(".bar").getBoundingClientRect();
			return {
				depth: Number(r.getAttribute("aria-level")) - 1,
				service: r.querySelector(".service").textContent,
				name: r.querySelector(".span-name").textContent,
				kind: r.querySelector(".kind").textContent,
				left: bar.left, right: bar.right,
			};
		})`, &rows),
	)
	if err != nil {
		screenshot("calculator-traces-failed.png")
		var shown string
		_ = chromedp.Run(ctx, chromedp.Evaluate(`document.getElementById("status").textContent + " | " +
			[...document.querySelectorAll("#traces tr")].map(r => r.textContent).join(" | ")`, &shown))
		t.Fatalf("driving the pages: %v (traces page: %s)", err, shown)
	}
	want := []string{
		"0 calculator-front-end calllocal/addapp/add server", // the front end's call, received by its sidecar
		"1 calculator-front-end calllocal/addapp/add client", // the hop to addapp's sidecar
		"2 addapp calllocal/addapp/add server",               // its receipt there
		"3 addapp callapp/addapp/add client",                 // the call to the operator
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.String())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the waterfall shows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(title, "calllocal/addapp/add") || !strings.Contains(meta, "4 spans · 2 services") {
		t.Errorf("trace heading %q, %q", title, meta)
	}
	// Each span's bar has a length and lies within its parent's.
	for i, r := range rows {
		if r.Right-r.Left < 1 {
			t.Errorf("span %q: bar from %.1f to %.1f px", r, r.Left, r.Right)
		}
		if i > 0 && (r.Left < rows[i-1].Left-0.5 || r.Right > rows[i-1].Right+0.5) {
			t.Errorf("span %q: bar %.1f-%.1f px outside its parent's %.1f-%.1f", r, r.Left, r.Right, rows[i-1].Left, rows[i-1].Right)
		}
	}

	// A click on the hop shows its attributes.
	var attrs map[string]string
	err = chromedp.Run(ctx,
		chromedp.Click(`#waterfall .span[aria-level="2"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#waterfall .span[aria-level="2"] + .attrs`, chromedp.ByQuery),
		chromedp.Evaluate(`Object.fromEntries([...document.querySelectorAll('#waterfall .span[aria-level="2"] + .attrs tr')]
			.map(tr => [tr.querySelector("th").textContent, tr.querySelector("td").textContent]))`, &attrs),
	)
	screenshot("calculator-traces.png")
	if err != nil {
		t.Fatalf("opening the hop's attributes: %v", err)
	}
	for k, v := range map[string]string{"service": "calculator-front-end", "peer.service": "addapp", "http.request.method": "POST", "http.response.status_code": "200"} {
		if attrs[k] != v {
			t.Errorf("the hop's %s is %q, want %q (all: %v)", k, attrs[k], v, attrs)
		}
	}
	if !strings.HasSuffix(attrs["duration"], "ms") && !strings.HasSuffix(attrs["duration"], "µs") {
		t.Errorf("the hop's duration is %q", attrs["duration"])
	}
}

// A taken port for the traces page is an error before anything is built.
func TestTracesPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	out, err := exec.Command("go", "run", "./cmd/local", "-port", strconv.Itoa(proc.For(t).FreePort()), "-traces", "-traces-port", port).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "port "+port+" for the traces page is taken") || !strings.Contains(string(out), "-traces-port") {
		t.Errorf("traces port taken: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "building") {
		t.Errorf("the runner built something before saying the port is taken:\n%s", out)
	}
}
