// Package chromium drives a headless Chromium for the browser tests (the
// calculator's page, the dashboard's, here and on the real node) through
// chromedp: finding Chromium, starting it for a test, waiting for the page
// and keeping screenshots.
package chromium

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// errMissing says how to install Chromium.
var errMissing = errors.New("chromium is not installed; CI must install it (apt-get install -y chromium)")

// Look finds Chromium, or says how to install it.
func Look() (string, error) {
	p, err := exec.LookPath("chromium")
	if err != nil {
		return "", errMissing
	}
	return p, nil
}

// Need returns Chromium's path, or skips the test where it is not
// installed (outside CI; in CI the test fails).
func Need(t testing.TB) string {
	t.Helper()
	p, err := Look()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip("chromium is not installed: apt-get install -y chromium (or run make test)")
	}
	return p
}

// Start starts a headless Chromium (the one at path) for the test, stopped
// at its end; the test has d from now to drive it through the context.
func Start(t testing.TB, path string, d time.Duration) context.Context {
	t.Helper()
	dir := userDataDir(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-crash-reporter", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.UserDataDir(dir),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	// chromedp logs events of newer Chromium versions it cannot decode; they are harmless.
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(func(string, ...any) {}))
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, d)
	t.Cleanup(cancelTimeout)
	return ctx
}

// userDataDir makes the browser's profile folder, removed at the test's end
// once the browser is gone. Not t.TempDir: Chromium's helper processes can
// still write into the profile for a moment after the browser is stopped,
// and t.TempDir fails the test when its folder is not empty then (a node
// test failed so in CI). Removal is tried again for up to 5 s, then logged.
func userDataDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "chromium-profile-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var err error
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if err = os.RemoveAll(dir); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Logf("chromium profile %s left behind: %v", dir, err)
		}
	})
	return dir
}

// Poll waits up to 30 s for the JavaScript expression expr to hold in the
// page.
func Poll(expr string) chromedp.Action {
	return PollFor(expr, 30*time.Second)
}

// PollFor waits up to d for expr to hold in the page, trying it every
// 100 ms.
func PollFor(expr string, d time.Duration) chromedp.Action {
	return chromedp.Poll(expr, nil, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(100*time.Millisecond))
}

// PageText is the page's text, to say what it showed when a test failed.
func PageText(ctx context.Context) string {
	var s string
	_ = chromedp.Run(ctx, chromedp.Evaluate(`document.body.innerText`, &s))
	return s
}

// Screenshot keeps a full-page screenshot in the temporary folder under
// name, and logs where; a screenshot that fails is logged, not an error.
func Screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(os.TempDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot: %s", path)
}
