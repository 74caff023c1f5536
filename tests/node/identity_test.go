package node

import (
	"bufio"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-run/tandem/internal/identity"
)

// TestRootRotation: the smoke test of mutual TLS's renewals and root
// rotation on the node, under a steady load through the front end. The
// chart runs with one-minute certificates (renewed every forty seconds),
// and the root in its Secret tandem-ca is rotated as docs/identity.md says:
// the old and the new root in trust-bundle.pem until every sidecar trusts
// both (the injector puts the bundle in the namespace's ConfigMap, the
// kubelet into the pods), then the new root and key in ca.crt and ca.key
// until every sidecar has a certificate of the new root, then the new root
// alone in the bundle. Not one request fails, the callee sees callers'
// certificates from both roots, and no pod restarts: not the apps', not the
// injector's.
func TestRootRotation(t *testing.T) {
	calculator(t)
	t.Cleanup(func() {
		if out, err := helm(t, append([]string{"upgrade", "tandem", repo + "/charts/tandem"}, chartArgs()...)...); err != nil {
			t.Errorf("helm upgrade back to the chart's defaults: %v\n%s", err, out)
		}
	})
	if out, err := helm(t, append([]string{"upgrade", "tandem", repo + "/charts/tandem"}, append(chartArgs(), "--set", "mtls.certTTL=1m")...)...); err != nil {
		t.Fatalf("helm upgrade --set mtls.certTTL=1m: %v\n%s", err, out)
	}
	var names []string
	for _, a := range apps {
		names = append(names, a.deployment)
		restart(t, "default", a.deployment)
	}
	time.Sleep(time.Second)
	waitAvailable(t, "default", 3*time.Minute, names...)
	waitResolvable(t, "default", time.Minute, names...)

	secrets := cluster.Client.CoreV1().Secrets(chartNS)
	s, err := secrets.Get(ctxT(t, time.Minute), "tandem-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldRoot, err := identity.ParseCA(s.Data["ca.crt"], s.Data["ca.key"])
	if err != nil {
		t.Fatal(err)
	}
	newRoot, err := identity.NewCA("tandem root rotated "+time.Now().UTC().Format(time.RFC3339), 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	oldKey, _ := oldRoot.KeyPEM()
	newKey, _ := newRoot.KeyPEM()
	update := func(crt, key []byte, bundle ...[]byte) {
		t.Helper()
		s, err := secrets.Get(ctxT(t, time.Minute), "tandem-ca", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Data = map[string][]byte{"ca.crt": crt, "ca.key": key, "trust-bundle.pem": slices.Concat(bundle...)}
		if _, err := secrets.Update(ctxT(t, time.Minute), s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	before := podsNow(t)
	for _, p := range before {
		if got := sidecarGauge(t, p, "tandem_mtls_certificate_info", "issuer"); !slices.Equal(got, []string{oldRoot.Name()}) {
			t.Fatalf("%s: certificate of %v before the rotation, want %q", p.Name, got, oldRoot.Name())
		}
	}
	l := underLoad(t)
	step := l.stepper(t)
	// everySidecar waits until each app pod's sidecar reports the gauge
	// with exactly the label values want.
	everySidecar := func(metric, label string, want ...string) {
		t.Helper()
		slices.Sort(want)
		deadline := time.Now().Add(3 * time.Minute)
		for _, p := range before {
			for {
				got := sidecarGauge(t, p, metric, label)
				if slices.Equal(got, want) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s{%s} is %v after 3 minutes, want %v", p.Name, metric, label, got, want)
				}
				time.Sleep(time.Second)
			}
		}
	}

	step("both roots in trust-bundle.pem, in every sidecar", func() {
		update(oldRoot.CertPEM(), oldKey, oldRoot.CertPEM(), newRoot.CertPEM())
		everySidecar("tandem_mtls_trust_anchors", "root", oldRoot.Name(), newRoot.Name())
	})
	step("the new root signing, every sidecar renewed from it", func() {
		update(newRoot.CertPEM(), newKey, oldRoot.CertPEM(), newRoot.CertPEM())
		everySidecar("tandem_mtls_certificate_info", "issuer", newRoot.Name())
	})
	step("the old root out of every sidecar's bundle", func() {
		update(newRoot.CertPEM(), newKey, newRoot.CertPEM())
		everySidecar("tandem_mtls_trust_anchors", "root", newRoot.Name())
	})
	time.Sleep(5 * time.Second) // calls with the new bundle alone
	l.halt()
	t.Logf("load: %s", l)
	if f := l.failed.Load(); f > 0 {
		t.Errorf("%d requests failed during the rotation; by kind: %v; the first: %s", f, l.kinds, strings.Join(l.failures, "\n  "))
	}

	// The callees saw the front end's certificates of both roots.
	for _, p := range before {
		if !strings.HasPrefix(p.Name, "addapp-") && !strings.HasPrefix(p.Name, "subtractapp-") {
			continue
		}
		for _, root := range []string{oldRoot.Name(), newRoot.Name()} {
			if n := sidecarCounter(t, p, "tandem_mtls_peer_certificates_total", "root", root); n == 0 {
				t.Errorf("%s saw no caller certificate of %q", p.Name, root)
			}
		}
	}
	// No pod was replaced or restarted.
	after := podsNow(t)
	for name, p := range before {
		q, ok := after[name]
		if !ok || q.UID != p.UID {
			t.Errorf("pod %s was replaced during the rotation", name)
			continue
		}
		for i, c := range q.Status.ContainerStatuses {
			if i < len(p.Status.ContainerStatuses) && c.RestartCount != p.Status.ContainerStatuses[i].RestartCount {
				t.Errorf("pod %s: container %s restarted during the rotation", name, c.Name)
			}
		}
	}
	dep, err := cluster.Client.AppsV1().Deployments(chartNS).Get(ctxT(t, time.Minute), "tandem-injector", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range deploymentPods(chartNS, dep) {
		if p.CreationTimestamp.Time.After(l.began) {
			t.Errorf("the injector's pod %s was made during the rotation: the new root needs no restart", p.Name)
		}
	}
}

// podsNow are the calculator's pods by name.
func podsNow(t *testing.T) map[string]corev1.Pod {
	t.Helper()
	out := map[string]corev1.Pod{}
	for _, a := range apps {
		dep, err := cluster.Client.AppsV1().Deployments("default").Get(ctxT(t, time.Minute), a.deployment, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range deploymentPods("default", dep) {
			if p.DeletionTimestamp == nil {
				out[p.Name] = p
			}
		}
	}
	return out
}

// sidecarSeries reads the pod's sidecar metrics (port 9090) and returns
// the value of each series of metric by its label's value.
func sidecarSeries(t *testing.T, p corev1.Pod, metric, label string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + net.JoinHostPort(p.Status.PodIP, "9090") + "/metrics")
	if err != nil {
		t.Fatalf("%s: metrics: %v", p.Name, err)
	}
	defer resp.Body.Close()
	labelRE := regexp.MustCompile(label + `="((?:[^"\\]|\\.)*)"`)
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric+"{") {
			continue
		}
		m := labelRE.FindStringSubmatch(line)
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if m == nil || err != nil {
			t.Fatalf("%s: metric line %q", p.Name, line)
		}
		out[m[1]] = v
	}
	return out
}

// sidecarGauge is the sorted label values of metric's series that are 1.
func sidecarGauge(t *testing.T, p corev1.Pod, metric, label string) []string {
	t.Helper()
	var out []string
	for k, v := range sidecarSeries(t, p, metric, label) {
		if v == 1 {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func sidecarCounter(t *testing.T, p corev1.Pod, metric, label, value string) float64 {
	t.Helper()
	return sidecarSeries(t, p, metric, label)[value]
}
