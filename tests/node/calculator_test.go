package node

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/jaegerquery"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The calculator's five apps, their Deployments (samples/calculator/deploy)
// and app ports.
var apps = []struct{ id, deployment, port string }{
	{"addapp", "addapp", "6000"},
	{"subtractapp", "subtractapp", "6000"},
	{"multiplyapp", "multiplyapp", "6000"},
	{"divideapp", "divideapp", "6000"},
	{"calculator-front-end", "calculator-front-end", "8080"},
}

const chartNS = "tandem-system"

// chartArgs install the chart as the calculator's README says, with Redis
// and the Zipkin-API collector on, their images the ones made here, and
// the dashboard on (TestDashboard), reading the traces from the
// collector's Jaeger query API (jaegerQueryService) since the collector
// here is Jaeger's, which takes Zipkin's spans but does not answer
// Zipkin's query API.
func chartArgs() []string {
	return []string{
		"--namespace", chartNS, "--create-namespace", "--wait", "--timeout", "5m",
		"--set", "redis.enabled=true", "--set", "zipkin.enabled=true",
		"--set", "redis.image.repository=tandem/redis", "--set", "redis.image.tag=" + version,
		"--set", "zipkin.image.repository=tandem/collector", "--set", "zipkin.image.tag=" + version,
		"--set", "dashboard.enabled=true",
		"--set", "dashboard.jaegerQuery=http://" + jaegerQueryName + "." + chartNS + ".svc.cluster.local:16686",
	}
}

// jaegerQueryName is the Service of the collector's Jaeger query API.
const jaegerQueryName = "tandem-jaeger-query"

// jaegerQueryService makes sure a Service reaches the collector pod's
// Jaeger query API (port 16686), which the chart's Zipkin Service does not
// serve: the dashboard reads the traces there (chartArgs).
func jaegerQueryService(t *testing.T) {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	if _, err := cluster.Client.CoreV1().Services(chartNS).Get(ctx, jaegerQueryName, metav1.GetOptions{}); err == nil {
		return
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: jaegerQueryName, Namespace: chartNS},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app.kubernetes.io/name": "zipkin", "app.kubernetes.io/instance": "tandem"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 16686, TargetPort: intstr.FromInt32(16686)}},
		},
	}
	if _, err := cluster.Client.CoreV1().Services(chartNS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the Jaeger query Service: %v", err)
	}
}

// calculator makes sure the chart of this tree is installed (helm install,
// or helm upgrade from another version) and the calculator's manifests are
// applied, unchanged, with every pod's sidecar the chart's (a Deployment
// whose pods have another is restarted), and waits until every Deployment
// is available. Tests that change these put them back through it.
func calculator(t *testing.T) {
	t.Helper()
	chart(t)
	var names []string
	for _, a := range apps {
		names = append(names, a.deployment)
	}
	if _, err := cluster.Client.AppsV1().Deployments("default").Get(ctxT(t, time.Minute), apps[0].deployment, metav1.GetOptions{}); err != nil {
		start := time.Now()
		deploy, _ := filepath.Glob(filepath.Join(repo, "samples", "calculator", "deploy", "*.yaml"))
		apply(t, "default", deploy...)
		waitAvailable(t, "default", 3*time.Minute, names...)
		waitResolvable(t, "default", time.Minute, names...)
		t.Logf("calculator Ready and resolvable %s after kubectl apply", time.Since(start).Round(100*time.Millisecond))
		return
	}
	for _, name := range names {
		dep, err := cluster.Client.AppsV1().Deployments("default").Get(ctxT(t, time.Minute), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range deploymentPods("default", dep) {
			if sidecarImage(&p) != "tandem/sidecar:"+version {
				restart(t, "default", name)
				break
			}
		}
	}
	waitAvailable(t, "default", 3*time.Minute, names...)
	waitResolvable(t, "default", time.Minute, names...)
}

// chart makes sure the chart of this tree is installed (helm install, or
// helm upgrade from another version), with Redis and the collector on
// (chartArgs), and that its webhook has its caBundle.
func chart(t *testing.T) {
	t.Helper()
	switch installed := chartInstalled(t); {
	case installed == "":
		start := time.Now()
		out, err := helm(t, append([]string{"install", "tandem", filepath.Join(repo, "charts", "tandem")}, chartArgs()...)...)
		if err != nil {
			t.Fatalf("helm install: %v\n%s", err, out)
		}
		t.Logf("chart installed in %s (helm install --wait)", time.Since(start).Round(100*time.Millisecond))
	case installed != "tandem-"+version:
		if out, err := helm(t, append([]string{"upgrade", "tandem", filepath.Join(repo, "charts", "tandem")}, chartArgs()...)...); err != nil {
			t.Fatalf("helm upgrade from %s: %v\n%s", installed, err, out)
		}
	}
	waitCABundle(t)
	jaegerQueryService(t)
}

// chartInstalled is the chart (name-version) of the release tandem, or "".
func chartInstalled(t *testing.T) string {
	t.Helper()
	out, err := helm(t, "list", "--namespace", chartNS, "--filter", "^tandem$", "--output", "json")
	if err != nil {
		t.Fatalf("helm list: %v\n%s", err, out)
	}
	var releases []struct{ Chart string }
	if err := json.Unmarshal([]byte(out), &releases); err != nil {
		t.Fatalf("helm list: %v\n%s", err, out)
	}
	if len(releases) == 0 {
		return ""
	}
	return releases[0].Chart
}

// sidecarImage is the image of a pod's sidecar, "" without one.
func sidecarImage(p *corev1.Pod) string {
	for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
		if c.Name == "daprd" {
			return c.Image
		}
	}
	return ""
}

// restart does what kubectl rollout restart does: a new pod template
// annotation, so that the Deployment replaces its pods.
func restart(t *testing.T, ns, name string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339Nano))
	if _, err := cluster.Client.AppsV1().Deployments(ns).Patch(ctxT(t, time.Minute), name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("rollout restart %s/%s: %v", ns, name, err)
	}
}

// waitCABundle waits until the injector has put its CA into its webhook
// configuration: pods created before would be admitted without a sidecar
// (failurePolicy Ignore).
func waitCABundle(t *testing.T) {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	for {
		wc, err := cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "tandem-injector", metav1.GetOptions{})
		if err == nil && len(wc.Webhooks) > 0 && len(wc.Webhooks[0].ClientConfig.CABundle) > 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the injector set no caBundle: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// frontEnd is the calculator's front end as its users reach it: through
// its Service's cluster IP.
func frontEnd(t *testing.T) string {
	t.Helper()
	svc, err := cluster.Client.CoreV1().Services("default").Get(ctxT(t, time.Minute), "calculator-front-end", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + svc.Spec.ClusterIP
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestCalculator: the chart installed with helm, the injector serving its
// webhook from its pod, the calculator's manifests applied unchanged; every
// app's pod Running and Ready with its injected sidecar, the reference
// session through the front end's Service, state in the Redis pod, and one
// trace from the front end's sidecar to the operator read back from the
// collector pod.
func TestCalculator(t *testing.T) {
	calculator(t)
	ctx := ctxT(t, 3*time.Minute)

	for _, a := range apps {
		dep, err := cluster.Client.AppsV1().Deployments("default").Get(ctx, a.deployment, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pods := deploymentPods("default", dep)
		if len(pods) == 0 {
			t.Fatalf("%s: no pod", a.id)
		}
		for i := range pods {
			checkInjected(t, &pods[i], a.id, a.port)
		}
	}
	// Redis and the collector are the chart's, not annotated: no sidecar.
	for _, name := range []string{"tandem-redis", "tandem-zipkin"} {
		dep, err := cluster.Client.AppsV1().Deployments(chartNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range deploymentPods(chartNS, dep) {
			if len(p.Spec.Containers) != 1 || !podReady(&p) {
				t.Errorf("%s: containers %d, ready %v", p.Name, len(p.Spec.Containers), podReady(&p))
			}
		}
	}

	// The injector is ready, never restarted, and no probe failed once it
	// was ready.
	checkNoProbeFailures(t, chartNS, "tandem-injector")

	url := frontEnd(t)
	operands := `{"operandOne":"52","operandTwo":"34"}`
	for op, want := range map[string]string{"add": "86", "subtract": "18", "divide": "1.5294117647058822", "multiply": "1768"} {
		if code, body := post(t, url+"/calculate/"+op, operands); code != 200 || strings.TrimSpace(body) != want {
			t.Errorf("/calculate/%s: %d %q, want 200 %s", op, code, body, want)
		}
	}
	if code, body := post(t, url+"/persist", `[{"key":"calculatorState","value":{"total":"54","next":null,"operation":null}}]`); code != 200 || body != "" {
		t.Errorf("/persist: %d %q, want 200 and an empty body", code, body)
	}
	resp, err := http.Get(url + "/state")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var state map[string]any
	if err := json.Unmarshal(b, &state); err != nil || resp.StatusCode != 200 || state["total"] != "54" || state["next"] != nil || state["operation"] != nil || len(state) != 3 {
		t.Errorf("/state: %d %s, want {\"total\":\"54\",\"next\":null,\"operation\":null}", resp.StatusCode, b)
	}

	// The state is in the Redis pod, under the front end's key prefix.
	if got := redisGet(t, "calculator-front-end||calculatorState"); !strings.Contains(got, `"total":"54"`) {
		t.Errorf("Redis holds %q for calculator-front-end||calculatorState", got)
	}

	checkAddTrace(t)
}

// checkInjected checks an app's pod: Running and Ready, its sidecar
// injected with real probes, a read-only root and no capabilities, and
// both containers ready without a restart.
func checkInjected(t *testing.T, p *corev1.Pod, id, port string) {
	t.Helper()
	if p.Status.Phase != corev1.PodRunning || !podReady(p) {
		t.Errorf("%s: pod %s is not Running and Ready: %s", id, p.Name, describe(p))
	}
	var sidecar *corev1.Container
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == "daprd" {
			sidecar = &p.Spec.Containers[i]
		}
	}
	for i := range p.Spec.InitContainers {
		if p.Spec.InitContainers[i].Name == "daprd" {
			sidecar = &p.Spec.InitContainers[i]
		}
	}
	if sidecar == nil {
		t.Errorf("%s: pod %s has no sidecar", id, p.Name)
		return
	}
	args := strings.Join(sidecar.Args, " ")
	for _, want := range []string{"--mode kubernetes", "--app-id " + id, "--app-port " + port, "--config appconfig"} {
		if !strings.Contains(args, want) {
			t.Errorf("%s: sidecar args %q lack %q", id, args, want)
		}
	}
	if want := "tandem/sidecar:" + version; sidecar.Image != want {
		t.Errorf("%s: sidecar image %s, want %s (the chart's default, which make images builds)", id, sidecar.Image, want)
	}
	// The chart's default (sidecar.native: auto) on this 1.37 node: a
	// native sidecar, started before the app once the outbound route
	// answers.
	if sp := sidecar.StartupProbe; sidecar.RestartPolicy == nil || *sidecar.RestartPolicy != corev1.ContainerRestartPolicyAlways ||
		sp == nil || sp.HTTPGet == nil || sp.HTTPGet.Path != "/v1.0/healthz/outbound" {
		t.Errorf("%s: not a native sidecar: restartPolicy %v, startup probe %+v", id, sidecar.RestartPolicy, sp)
	}
	rp, lp := sidecar.ReadinessProbe, sidecar.LivenessProbe
	if rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/v1.0/healthz" || lp == nil || lp.HTTPGet == nil || lp.HTTPGet.Path != "/v1.0/healthz/outbound" {
		t.Errorf("%s: sidecar probes: readiness %+v, liveness %+v", id, rp, lp)
	}
	sc := sidecar.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: sidecar security context %+v", id, sc)
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if !cs.Ready || cs.RestartCount != 0 {
			t.Errorf("%s: container %s ready %v, restarts %d", id, cs.Name, cs.Ready, cs.RestartCount)
		}
	}
}

// checkNoProbeFailures fails the test if a pod of the Deployment restarted,
// is not ready, or had a probe fail (an Unhealthy event) once it was ready.
// A readiness probe refused while the program starts (the kubelet's first
// try can come before it binds its port on a loaded machine) is not a
// failure of the program: only what follows its becoming ready counts.
func checkNoProbeFailures(t *testing.T, ns, deployment string) {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	dep, err := cluster.Client.AppsV1().Deployments(ns).Get(ctx, deployment, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	readySince := map[string]time.Time{}
	for _, p := range deploymentPods(ns, dep) {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.RestartCount > 0 {
				t.Errorf("%s: container %s restarted %d times", p.Name, cs.Name, cs.RestartCount)
			}
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				readySince[p.Name] = c.LastTransitionTime.Time
			}
		}
		if _, ok := readySince[p.Name]; !ok {
			t.Errorf("%s: not ready", p.Name)
		}
	}
	events, err := cluster.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=Unhealthy"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events.Items {
		if !strings.HasPrefix(e.InvolvedObject.Name, deployment+"-") {
			continue
		}
		since, ok := readySince[e.InvolvedObject.Name]
		if ok && strings.HasPrefix(e.Message, "Readiness probe failed") && !e.LastTimestamp.Time.After(since) {
			t.Logf("%s: %s before it was ready (%d times): %s", e.InvolvedObject.Name, e.Reason, e.Count, e.Message)
			continue
		}
		t.Errorf("%s: %s %s (%d times, last at %s)", e.InvolvedObject.Name, e.Reason, e.Message, e.Count, e.LastTimestamp.Format(time.RFC3339))
	}
}

// podIP is the IP of the one pod of a Deployment.
func podIP(t *testing.T, ns, deployment string) string {
	t.Helper()
	dep, err := cluster.Client.AppsV1().Deployments(ns).Get(ctxT(t, time.Minute), deployment, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods := deploymentPods(ns, dep)
	for _, p := range pods {
		if p.DeletionTimestamp == nil && podReady(&p) {
			return p.Status.PodIP
		}
	}
	t.Fatalf("%s/%s has no ready pod", ns, deployment)
	return ""
}

// redisGet reads a key's value from the chart's Redis pod (a string, or
// the fields of a hash, as RESP text).
func redisGet(t *testing.T, key string) string {
	t.Helper()
	ip := podIP(t, chartNS, "tandem-redis")
	c, err := net.DialTimeout("tcp", ip+":6379", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "*2\r\n$7\r\nHGETALL\r\n$%d\r\n%s\r\n", len(key), key)
	buf := make([]byte, 4096)
	n, _ := c.Read(buf)
	return string(buf[:n])
}

// checkAddTrace reads the traces of /calculate/add back from the collector
// pod's query API: one of them goes front end's sidecar (the API call and
// the hop) -> addapp's sidecar (the receipt) -> the add operator (the app
// call), each span under the one before.
func checkAddTrace(t *testing.T) {
	t.Helper()
	query := "http://" + podIP(t, chartNS, "tandem-zipkin") + ":16686/api/traces?service=calculator-front-end&operation=calllocal%2Faddapp%2Fadd&limit=20&lookback=1h"
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		traces, err := jaegerquery.Get(query)
		if err != nil {
			last = err.Error()
			time.Sleep(time.Second)
			continue
		}
		for _, tr := range traces {
			byKey := map[string]jaegerquery.Span{}
			for _, s := range tr {
				byKey[s.Service+" "+s.OperationName+" "+s.Tag("span.kind")] = s
			}
			api, ok1 := byKey["calculator-front-end calllocal/addapp/add server"]
			hop, ok2 := byKey["calculator-front-end calllocal/addapp/add client"]
			recv, ok3 := byKey["addapp calllocal/addapp/add server"]
			app, ok4 := byKey["addapp callapp/addapp/add client"]
			if ok1 && ok2 && ok3 && ok4 && hop.Parent() == api.SpanID && recv.Parent() == hop.SpanID && app.Parent() == recv.SpanID {
				return
			}
			last = fmt.Sprintf("trace %s: %d spans %v", tr[0].TraceID, len(tr), keys(byKey))
		}
		time.Sleep(time.Second)
	}
	t.Errorf("no trace front end -> sidecar -> sidecar -> add operator in the collector after 30 s; last: %s", last)
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
