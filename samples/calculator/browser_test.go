package calculator_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tandem-run/tandem/internal/testutil/chromium"
)

// TestBrowserClicksAndReload drives the page in a real headless Chromium:
// 52 + 34 = shows 86, a reload shows the persisted 86 again, and keys
// clicked without waiting (12 x 3 =) are none of them lost.
func TestBrowserClicksAndReload(t *testing.T) {
	chromePath := chromium.Need(t)
	base := startCalculator(t)
	ctx := chromium.Start(t, chromePath, 90*time.Second)

	var display string
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
		chromedp.Reload(),
		chromedp.WaitVisible("#display", chromedp.ByID),
		waitDisplay("86"),
		chromedp.Text("#display", &display, chromedp.ByID),
		// Keys typed faster than the back end answers are all taken, in order.
		click("AC"), click("1"), click("2"), click("x"), click("3"), click("="),
		waitDisplay("36"),
	)
	if err != nil {
		// Say what the page showed when it stopped.
		var shown string
		_ = chromedp.Run(ctx, chromedp.Evaluate(`"display=" + document.getElementById("display").textContent + " error=" + document.getElementById("error").textContent`, &shown))
		t.Fatalf("driving the page: %v (page: %s)", err, shown)
	}
	if display != "86" {
		t.Errorf("after reload the display shows %q, want 86", display)
	}
}

// click presses a key of the calculator.
func click(key string) chromedp.Action {
	return chromedp.Click(`button[data-key="`+key+`"]`, chromedp.ByQuery)
}

// waitDisplay waits until the calculator shows want and no error.
func waitDisplay(want string) chromedp.Action {
	return chromedp.Poll(`document.getElementById("display").textContent === "`+want+`" && document.getElementById("error").textContent === ""`, nil, chromedp.WithPollingTimeout(20*time.Second))
}
