package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/tandem-run/tandem/internal/testutil/chromium"
)

// TestDashboard: the chart's dashboard (dashboard.enabled) runs in its pod
// from its image, in kubernetes mode, and its page, loaded in headless
// Chromium from the host through the dashboard's ClusterIP Service, shows
// the calculator as a user sees it:
//   - the five apps healthy, each replica a row naming its pod, with its
//     SPIFFE ID and a certificate expiry to come;
//   - the edges front end -> each operator, with a rate above zero, after
//     calls through the front end;
//   - divideapp's sidecar stopped (SIGSTOP: the pod stays, the sidecar does
//     not answer) shown unhealthy once the kubelet's readiness probe has
//     failed (bound: 90 s);
//   - a division made while it is stopped fails, and shows in the error
//     count and rate of front end -> divideapp, and its trace, read from the
//     collector pod, opens with the failed span in red;
//   - a Component changed to a version the sidecars refuse shows in the
//     refused changes with its reason, the old version still in force.
//
// Full-page screenshots go to the temporary folder (node-dashboard*.png).
func TestDashboard(t *testing.T) {
	chromePath := chromium.Need(t)
	calculator(t)
	waitAvailable(t, chartNS, 3*time.Minute, "tandem-dashboard")
	svc, err := cluster.Client.CoreV1().Services(chartNS).Get(ctxT(t, time.Minute), "tandem-dashboard", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dash := fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port)

	url := frontEnd(t)
	ops := []string{"add", "subtract", "multiply", "divide"}
	for _, op := range ops {
		for range 3 {
			if code, body := post(t, url+"/calculate/"+op, `{"operandOne":"52","operandTwo":"34"}`); code != http.StatusOK {
				t.Fatalf("/calculate/%s: %d %s", op, code, body)
			}
		}
	}

	ctx := chromium.Start(t, chromePath, 10*time.Minute)
	shot := func(name string) { chromium.Screenshot(t, ctx, name) }
	fail := func(what string, err error) {
		t.Helper()
		shot("node-dashboard-failed.png")
		t.Fatalf("%s: %v\npage: %.4000s", what, err, chromium.PageText(ctx))
	}

	// The five apps: each replica a healthy row naming its pod, with its
	// identity and a certificate that expires later.
	var checks []string
	for _, a := range apps {
		dep, err := cluster.Client.AppsV1().Deployments("default").Get(ctxT(t, time.Minute), a.deployment, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checks = append(checks, fmt.Sprintf(`rowsOK(%q, %q, %d)`, a.id, a.deployment, *dep.Spec.Replicas))
	}
	appsOK := `(() => {
  const rowsOK = (id, dep, n) => {
    const rows = [...document.querySelectorAll('#apps tbody tr[data-app-id="' + id + '"]')];
    return rows.length === n && rows.every(r => r.dataset.health === "healthy" &&
      r.dataset.spiffeId.startsWith("spiffe://") && r.dataset.spiffeId.endsWith("/ns/default/" + id) &&
      r.children[3].textContent.startsWith("default/" + dep + "-") &&
      new Date(r.children[7].dataset.expiry).getTime() > Date.now());
  };
  return ` + strings.Join(checks, " && ") + `;
})()`
	edge := func(op string) string {
		return `document.querySelector('#edges tr[data-kind="invoke"][data-caller="calculator-front-end"][data-callee="` + op + `app"]')`
	}
	edgesOK := "true"
	for _, op := range ops {
		e := edge(op)
		edgesOK += ` && ` + e + ` !== null && parseInt(` + e + `.dataset.calls) >= 3 && parseFloat(` + e + `.children[4].textContent) > 0`
	}
	start := time.Now()
	if err := chromedp.Run(ctx, chromedp.Navigate(dash+"/"), chromium.PollFor(appsOK+` && `+edgesOK, 2*time.Minute)); err != nil {
		fail("the five apps healthy with their identities and the four edges", err)
	}
	t.Logf("the page showed the five apps healthy and the four edges %s after its navigation", time.Since(start).Round(100*time.Millisecond))
	shot("node-dashboard.png")
	var errorsBefore int
	if err := chromedp.Run(ctx, chromedp.Evaluate(`parseInt(`+edge("divide")+`.dataset.errors)`, &errorsBefore)); err != nil {
		t.Fatal(err)
	}

	// divideapp's sidecar stops answering: the pod stays, its sidecar's
	// readiness probe fails, and the page shows the app unhealthy.
	pods := deploymentPods("default", deployment(t, "divideapp"))
	if len(pods) != 1 {
		t.Fatalf("divideapp has %d pods", len(pods))
	}
	restarts, id := sidecarStatus(&pods[0])
	if id == "" {
		t.Fatalf("divideapp's sidecar has no container: %s", describe(&pods[0]))
	}
	if out, err := cluster.Ctr(context.Background(), "tasks", "kill", "--signal", "SIGSTOP", id); err != nil {
		t.Fatalf("stopping divideapp's sidecar: %v %s", err, out)
	}
	stopped := time.Now()
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			// Gone already when the kubelet restarted it (liveness probe).
			_, _ = cluster.Ctr(context.Background(), "tasks", "kill", "--signal", "SIGCONT", id)
		}
	}
	t.Cleanup(func() {
		resume()
		// A sidecar the kubelet restarted: a new pod, as the other tests expect.
		p, err := cluster.Client.CoreV1().Pods("default").Get(context.Background(), pods[0].Name, metav1.GetOptions{})
		if err == nil {
			if after, _ := sidecarStatus(p); after != restarts {
				restart(t, "default", "divideapp")
			}
		}
		waitAvailable(t, "default", 3*time.Minute, "divideapp")
	})
	// A division made now fails: the front end's sidecar has divideapp's
	// address still (its pod is ready until its probe fails), and the hop
	// is not answered until the front end gives up after 10 s.
	type answer struct {
		code int
		body string
		err  error
	}
	divided := make(chan answer, 1)
	go func() {
		client := &http.Client{Timeout: time.Minute}
		resp, err := client.Post(url+"/calculate/divide", "application/json", strings.NewReader(`{"operandOne":"1","operandTwo":"2"}`))
		if err != nil {
			divided <- answer{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		divided <- answer{code: resp.StatusCode, body: string(b)}
	}()
	// Its ports and app port are unknown then: blank, not "http 0" and
	// "none" (no app port).
	unhealthy := `(() => {
  const r = document.querySelector('#apps tr[data-app-id="divideapp"][data-health="unhealthy"]');
  return r !== null && r.children[4].textContent === "" && r.children[5].textContent === "";
})()`
	if err := chromedp.Run(ctx, chromium.PollFor(unhealthy, 90*time.Second)); err != nil {
		fail("divideapp shown unhealthy once its sidecar stopped", err)
	}
	t.Logf("the page showed divideapp unhealthy %s after its sidecar stopped", time.Since(stopped).Round(100*time.Millisecond))
	shot("node-dashboard-unhealthy.png")
	a := <-divided
	if a.err == nil && a.code == http.StatusOK {
		t.Fatalf("a division with divideapp's sidecar stopped answered 200 %s", a.body)
	}
	t.Logf("a division with divideapp's sidecar stopped: %d %q %v", a.code, a.body, a.err)
	resume()
	failing := edge("divide") + ` !== null && parseInt(` + edge("divide") + `.dataset.errors) > ` + fmt.Sprint(errorsBefore) +
		` && ` + edge("divide") + `.children[5].className === "failing" && parseFloat(` + edge("divide") + `.children[5].textContent) > 0`
	if err := chromedp.Run(ctx, chromium.PollFor(failing, 90*time.Second)); err != nil {
		fail("the failed division in front end -> divideapp's error rate", err)
	}

	// Its trace: the front end's traces with an error, the division's
	// opened, a failed span in red.
	start = time.Now()
	if err := chromedp.Run(ctx,
		chromedp.Evaluate(`(() => {
  const app = document.getElementById("trace-app"), st = document.getElementById("trace-status");
  app.value = "calculator-front-end"; st.value = "error";
  app.dispatchEvent(new Event("change")); return app.value;
})()`, nil),
		chromium.PollFor(`(() => {
  const r = [...document.querySelectorAll('#traces tbody tr')].find(r => r.dataset.errors !== "0" && r.textContent.includes("divideapp"));
  if (!r) return false;
  r.click(); return true;
})()`, 2*time.Minute),
		chromium.PollFor(`document.querySelector('#waterfall-rows .span-row.error') !== null && document.getElementById("waterfall-rows").textContent.includes("divideapp")`, time.Minute),
	); err != nil {
		fail("the failed division's trace with its failed span", err)
	}
	t.Logf("the failed division's trace opened with its failed span %s after it was asked for", time.Since(start).Round(100*time.Millisecond))
	shot("node-dashboard-error.png")

	// A Component the sidecars hot-reload, changed to a version they refuse.
	checkRefusedComponent(t, ctx, fail)
	shot("node-dashboard-refused.png")
}

// checkRefusedComponent makes a Component (state.in-memory) in the
// calculator's namespace, waits until the page lists it in force, then
// changes it to a state.redis with a redisDB no Redis has: the sidecars
// refuse it, the page shows why, and the old version stays in force.
func checkRefusedComponent(t *testing.T, ctx context.Context, fail func(string, error)) {
	t.Helper()
	gvr := schema.GroupVersionResource{Group: "dapr.io", Version: "v1alpha1", Resource: "components"}
	comps := dynamic.NewForConfigOrDie(cluster.Config).Resource(gvr).Namespace("default")
	const name = "dashcheck"
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "dapr.io/v1alpha1", "kind": "Component",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"type": "state.in-memory", "version": "v1", "metadata": []any{}},
	}}
	if _, err := comps.Create(ctxT(t, time.Minute), obj, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Component %s: %v", name, err)
	}
	t.Cleanup(func() { _ = comps.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	inForce := `[...document.querySelectorAll('#components tr[data-name="` + name + `"]')].filter(r => r.children[2].textContent === "state.in-memory").length === 5`
	if err := chromedp.Run(ctx, chromium.PollFor(inForce, time.Minute)); err != nil {
		fail("Component "+name+" in force in the five sidecars", err)
	}

	cur, err := comps.Get(ctxT(t, time.Minute), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Object["spec"] = map[string]any{"type": "state.redis", "version": "v1", "metadata": []any{
		map[string]any{"name": "redisHost", "value": "tandem-redis." + chartNS + ".svc.cluster.local:6379"},
		map[string]any{"name": "redisDB", "value": "16"},
	}}
	if _, err := comps.Update(ctxT(t, time.Minute), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("changing Component %s: %v", name, err)
	}
	changed := time.Now()
	refused := `(() => {
  const rows = [...document.querySelectorAll('#rejected tbody tr')].filter(r => r.children[1].textContent === "Component" &&
    (r.children[2].textContent === "` + name + `" || r.children[3].textContent.endsWith("/` + name + `")) && r.children[4].textContent.includes("redisDB"));
  return new Set(rows.map(r => r.dataset.appId)).size === 5;
})()`
	if err := chromedp.Run(ctx, chromium.PollFor(refused+` && `+inForce, time.Minute)); err != nil {
		fail("Component "+name+"'s refused change shown with its reason, the old version in force", err)
	}
	var reason string
	_ = chromedp.Run(ctx, chromedp.Evaluate(`[...document.querySelectorAll('#rejected tbody tr')].find(r => r.children[2].textContent === "`+name+`").children[4].textContent`, &reason))
	t.Logf("the page showed the refused change %s after it, in the five sidecars: %s", time.Since(changed).Round(100*time.Millisecond), reason)
}

// deployment gets a Deployment of the calculator.
func deployment(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	dep, err := cluster.Client.AppsV1().Deployments("default").Get(ctxT(t, time.Minute), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return dep
}
