package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/tandem-run/tandem/internal/images"
)

// Load of the rolling update test: requests a second through the front
// end's Service, and the least requests in all.
const (
	loadRate     = 300
	loadRequests = 10000
)

// load sends /calculate/add and /calculate/subtract, in turn, to the front
// end at a steady rate, each on a new connection (as many clients behind a
// Service: a kept-alive connection to a pod going away is the client's
// race, not the cluster's), and counts the answers that are not right.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	failures   []string
	kinds      map[string]int // failures by message, addresses left out
	stop       chan struct{}
	halted     sync.Once
	wg         sync.WaitGroup
	began      time.Time
}

func startLoad(url string, rate int) *load {
	l := &load{stop: make(chan struct{}), began: time.Now(), kinds: map[string]int{}}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	calls := []struct{ op, want string }{{"add", "86"}, {"subtract", "18"}}
	tokens := make(chan int, rate)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer close(tokens)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			case <-tick.C:
				tokens <- i
			}
		}
	}()
	for range 64 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := range tokens {
				c := calls[i%len(calls)]
				resp, err := client.Post(url+"/calculate/"+c.op, "application/json", strings.NewReader(`{"operandOne":"52","operandTwo":"34"}`))
				var got string
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					got = strings.TrimSpace(string(b))
					if resp.StatusCode != 200 {
						err = fmt.Errorf("%d %s", resp.StatusCode, got)
					}
				}
				if err == nil && got == c.want {
					l.ok.Add(1)
					continue
				}
				l.failed.Add(1)
				l.mu.Lock()
				l.kinds[podIPs.ReplaceAllString(fmt.Sprintf("%s: %v", c.op, err), "<ip>")]++
				if len(l.failures) < 5 {
					l.failures = append(l.failures, fmt.Sprintf("%s %s: %v %q", time.Now().Format("15:04:05.000"), c.op, err, got))
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// end stops the load once it has sent at least n requests.
func (l *load) end(n int64) {
	for l.ok.Load()+l.failed.Load() < n {
		time.Sleep(100 * time.Millisecond)
	}
	l.halt()
}

// halt stops the load and waits for the requests under way; again, it
// does nothing.
func (l *load) halt() {
	l.halted.Do(func() {
		close(l.stop)
		l.wg.Wait()
	})
}

// underLoad starts the load through the front end for a test, lets it run
// three seconds, and halts it when the test ends if nothing has before.
func underLoad(t *testing.T) *load {
	t.Helper()
	l := startLoad(frontEnd(t), loadRate)
	t.Cleanup(l.halt)
	time.Sleep(3 * time.Second)
	return l
}

// stepper returns step, which runs f and logs how long it took, with the
// load so far.
func (l *load) stepper(t *testing.T) func(what string, f func()) {
	return func(what string, f func()) {
		t.Helper()
		start := time.Now()
		f()
		t.Logf("%s in %s; load so far: %s", what, time.Since(start).Round(100*time.Millisecond), l)
	}
}

// podIPs are the pod addresses in failure messages.
var podIPs = regexp.MustCompile(`10\.244\.0\.\d+`)

func (l *load) String() string {
	total := l.ok.Load() + l.failed.Load()
	secs := time.Since(l.began).Seconds()
	return fmt.Sprintf("%d requests in %.0f s (%.0f/s): %d failed", total, secs, float64(total)/secs, l.failed.Load())
}

// previousRelease finds the previous release, the tree just before the
// chart got this tree's version (the parent of the newest commit that set
// it; HEAD if the working tree sets it), builds its sidecar and injector
// images into the node, and returns its chart folder and version.
func previousRelease(t *testing.T) (chartDir, prevVersion string) {
	t.Helper()
	out, err := exec.Command("git", "-C", repo, "log", "--format=%H", "--", "charts/tandem/Chart.yaml").Output()
	if err != nil {
		t.Fatalf("git log: %v (the upgrade needs the repository's history)", err)
	}
	appVersion := func(rev string) string {
		b, err := exec.Command("git", "-C", repo, "show", rev+":charts/tandem/Chart.yaml").Output()
		var chart struct{ AppVersion string }
		if err != nil || yaml.Unmarshal(b, &chart) != nil {
			return ""
		}
		return chart.AppVersion
	}
	commit := "HEAD"
	for c := range strings.FieldsSeq(string(out)) {
		if appVersion(c) != version {
			break
		}
		commit = c + "^"
	}
	if prevVersion = appVersion(commit); prevVersion == "" || prevVersion == version {
		t.Fatalf("no release before %s in the history (%s has chart %q)", version, commit, prevVersion)
	}
	if out, err := exec.Command("git", "-C", repo, "rev-parse", commit).Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	src := filepath.Join(t.TempDir(), "src")
	for _, args := range [][]string{
		{"clone", "--quiet", "--shared", "--no-checkout", repo, src},
		{"-C", src, "-c", "advice.detachedHead=false", "checkout", "--quiet", commit},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	meta, err := images.RepoMeta(src, prevVersion)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var recipes []images.Recipe
	for _, name := range []string{"sidecar", "injector"} {
		r, err := images.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		recipes = append(recipes, r)
	}
	built, err := images.BuildAll(ctxT(t, 15*time.Minute), images.Options{Root: src, Out: filepath.Join(t.TempDir(), "images"), Meta: meta, Prefix: "tandem"}, recipes)
	if err != nil {
		t.Fatalf("building the images of %s (chart %s): %v", commit[:12], prevVersion, err)
	}
	for _, b := range built {
		if _, err := cluster.Ctr(context.Background(), "images", "import", b.File); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("previous release: chart %s of %s, its sidecar and injector built and imported in %s", prevVersion, commit[:12], time.Since(start).Round(100*time.Millisecond))
	return filepath.Join(src, "charts", "tandem"), prevVersion
}

// uninstall removes the calculator and the chart's release, and waits until
// their pods are gone.
func uninstall(t *testing.T) {
	t.Helper()
	ctx := ctxT(t, 3*time.Minute)
	for _, a := range apps {
		_ = cluster.Client.AppsV1().Deployments("default").Delete(ctx, a.deployment, metav1.DeleteOptions{})
	}
	if chartInstalled(t) != "" {
		if out, err := helm(t, "uninstall", "tandem", "--namespace", chartNS, "--wait"); err != nil {
			t.Fatalf("helm uninstall: %v\n%s", err, out)
		}
	}
	for _, ns := range []string{"default", chartNS} {
		for {
			pods, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.Everything().String()})
			if err == nil && len(pods.Items) == 0 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("pods of %s still there after 3 minutes", ns)
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
}

// scale sets the replicas of Deployment ns/name.
func scale(t *testing.T, ns, name string, replicas int32) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	if _, err := cluster.Client.AppsV1().Deployments(ns).Patch(ctxT(t, time.Minute), name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestRollingUpdates: under a steady load through the front end (add on
// addapp, subtract on subtractapp), with two replicas of the front end and
// addapp, the chart of the previous release (its injector, classic
// sidecars of its version) is upgraded with helm upgrade to this tree's,
// and addapp then the front end are restarted as kubectl rollout restart
// does: pods with the previous sidecar and pods with this one call each
// other, and not one request fails.
func TestRollingUpdates(t *testing.T) {
	prevChart, prevVersion := previousRelease(t)
	uninstall(t)
	t.Cleanup(func() {
		for _, name := range []string{"addapp", "calculator-front-end"} {
			scale(t, "default", name, 1)
		}
		calculator(t)
	})

	out, err := helm(t, "install", "tandem", prevChart, "--namespace", chartNS, "--create-namespace", "--wait", "--timeout", "5m")
	if err != nil {
		t.Fatalf("helm install of the previous chart (%s): %v\n%s", prevVersion, err, out)
	}
	waitCABundle(t)
	deploy, _ := filepath.Glob(filepath.Join(repo, "samples", "calculator", "deploy", "*.yaml"))
	apply(t, "default", deploy...)
	for _, name := range []string{"addapp", "calculator-front-end"} {
		scale(t, "default", name, 2)
	}
	var names []string
	for _, a := range apps {
		names = append(names, a.deployment)
	}
	waitAvailable(t, "default", 3*time.Minute, names...)
	waitResolvable(t, "default", time.Minute, names...)
	sidecars := func(name string) []string {
		dep, err := cluster.Client.AppsV1().Deployments("default").Get(ctxT(t, time.Minute), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range deploymentPods("default", dep) {
			// A pod the restart replaced may still be terminating
			// (draining its calls) when its Deployment is available.
			if p.DeletionTimestamp == nil {
				out = append(out, sidecarImage(&p))
			}
		}
		return out
	}
	for _, name := range []string{"addapp", "calculator-front-end", "subtractapp"} {
		for _, img := range sidecars(name) {
			if img != "tandem/sidecar:"+prevVersion {
				t.Fatalf("%s runs sidecar %s before the upgrade, want the previous release's %s", name, img, prevVersion)
			}
		}
	}

	l := underLoad(t)
	step := l.stepper(t)
	step("helm upgrade from "+prevVersion+" to "+version, func() {
		// The previous release has no mutual TLS: the new sidecars take
		// its calls and call it in plaintext for the upgrade (docs/identity.md).
		if out, err := helm(t, append([]string{"upgrade", "tandem", filepath.Join(repo, "charts", "tandem")}, append(chartArgs(), "--set", "mtls.allowPlaintextPeers=true")...)...); err != nil {
			t.Fatalf("helm upgrade: %v\n%s", err, out)
		}
		waitCABundle(t)
	})
	step("rollout restart of addapp (2 replicas)", func() {
		restart(t, "default", "addapp")
		time.Sleep(time.Second)
		waitAvailable(t, "default", 3*time.Minute, "addapp")
	})
	step("rollout restart of the front end (2 replicas)", func() {
		restart(t, "default", "calculator-front-end")
		time.Sleep(time.Second)
		waitAvailable(t, "default", 3*time.Minute, "calculator-front-end")
	})
	l.end(loadRequests)
	t.Logf("load: %s", l)
	if f := l.failed.Load(); f > 0 {
		t.Errorf("%d requests failed during the rolling updates; by kind: %v; the first: %s", f, l.kinds, strings.Join(l.failures, "\n  "))
	}
	if total := l.ok.Load() + l.failed.Load(); total < loadRequests {
		t.Errorf("%d requests, want at least %d", total, loadRequests)
	}
	// Mixed: the restarted Deployments run this tree's sidecar, the others
	// the previous release's, and the front end called both.
	for name, want := range map[string]string{"addapp": version, "calculator-front-end": version, "subtractapp": prevVersion} {
		imgs := sidecars(name)
		if len(imgs) == 0 {
			t.Errorf("%s has no running pods", name)
		}
		for _, img := range imgs {
			if img != "tandem/sidecar:"+want {
				t.Errorf("%s runs sidecar %s, want %s", name, img, want)
			}
		}
	}
}
