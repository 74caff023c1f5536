package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/tandem-run/tandem/internal/testutil/kubecluster"
	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/toolbin"
)

// kubeApps is the part of GET /api/apps the Kubernetes test reads.
type kubeApps struct {
	Kubernetes string `json:"kubernetes"`
	Apps       []struct {
		AppID       string `json:"appId"`
		Namespace   string `json:"namespace"`
		Pod         string `json:"pod"`
		Health      string `json:"health"`
		HealthError string `json:"healthError"`
		Metadata    string `json:"metadata"`
		MetadataErr string `json:"metadataError"`
		Mode        string `json:"mode"`
		HTTPPort    int    `json:"httpPort"`
		Components  []struct {
			Name, Type, Version string
		} `json:"components"`
	} `json:"apps"`
}

func (a kubeApps) pod(ns, name string) (int, bool) {
	for i, app := range a.Apps {
		if app.Namespace == ns && app.Pod == name {
			return i, true
		}
	}
	return -1, false
}

// TestKubernetes runs the dashboard as the chart runs it (its arguments,
// service account and RBAC, rendered with dashboard.enabled) against a real
// API server: the account may get, list and watch pods, and neither read a
// Secret nor write anything.
// The pods are made by the test and reported running at 127.0.0.1, where
// the test runs their sidecars (kubernetes mode, HTTP API on loopback, one
// with an API token): the dashboard lists the pods annotated
// dapr.io/enabled: "true", reads each sidecar's GET /v1.0/dashboard on the
// metrics port the pod's annotation names, and shows them without reading
// a token or a component's metadata value; a pod not running, one without
// its sidecar and one with metrics off are shown with why; --namespace
// lists one namespace; a sidecar that stops answering is unreachable.
func TestKubernetes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kubernetes control plane")
	}
	c := kubecluster.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dyn := dynamic.NewForConfigOrDie(c.Config)

	// The Component CRD, namespaces, and a Component with a value the
	// dashboard must not show.
	crd := readObject(t, "../../charts/tandem/crds/components.yaml")
	if _, err := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"shop", "web", "tandem-system"} {
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	comp := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "dapr.io/v1alpha1", "kind": "Component",
		"metadata": map[string]any{"name": "statestore"},
		"spec": map[string]any{"type": "state.in-memory", "version": "v1",
			"metadata": []any{map[string]any{"name": "keyPrefix", "value": "component-value-7f3a"}}},
	}}
	components := dyn.Resource(schema.GroupVersionResource{Group: "dapr.io", Version: "v1alpha1", Resource: "components"})
	until(t, ctx, "the Component created", func() error {
		_, err := components.Namespace("shop").Create(ctx, comp, metav1.CreateOptions{})
		return err
	})

	// The sidecars, in kubernetes mode with the administrator's token (to
	// read their Components), each on a metrics port of its own.
	dir := t.TempDir()
	adminToken := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(adminToken, []byte(c.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	m := &mesh{t: t}
	type side struct {
		p                 *proc.Proc
		metrics, httpPort int
	}
	kubeSidecar := func(ns, id string, appPort int, env ...string) side {
		pt := proc.For(t)
		ports, err := proc.FreePorts(2)
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"--mode", "kubernetes", "--app-id", id,
			"--dapr-http-port", strconv.Itoa(ports[0]), "--dapr-grpc-port", "0", "--dapr-internal-grpc-port", "0",
			"--metrics-port", strconv.Itoa(ports[1]), "--dapr-listen-addresses", "127.0.0.1"}
		if appPort != 0 {
			args = append(args, "--app-port", strconv.Itoa(appPort))
		}
		env = append(env, "NAMESPACE="+ns, "POD_NAME="+id, "TANDEM_KUBE_API="+c.URL, "TANDEM_KUBE_TOKEN_FILE="+adminToken, "TANDEM_KUBE_CA_FILE="+c.CAFile)
		p := pt.Start("sidecar "+ns+"/"+id, sidecarBin, env, args...)
		pt.WaitTCP("127.0.0.1:"+strconv.Itoa(ports[1]), listenWait)
		return side{p: p, httpPort: ports[0], metrics: ports[1]}
	}
	appPort, _ := m.app("orders")
	orders := kubeSidecar("shop", "orders", appPort, "DAPR_API_TOKEN=api-token-51c9")
	front := kubeSidecar("web", "front", 0)

	// The pods: what the injector would have made, reported running at
	// 127.0.0.1 as a kubelet would.
	pod := func(ns, name string, ann map[string]string, sidecar, running bool) {
		containers := []corev1.Container{{Name: "app", Image: "app:1"}}
		if sidecar {
			containers = append(containers, corev1.Container{Name: "daprd", Image: "tandem/sidecar:1"})
		}
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}, Spec: corev1.PodSpec{Containers: containers}}
		// The namespace's default service account comes from the
		// controller manager, shortly after the namespace.
		until(t, ctx, "pod "+ns+"/"+name, func() error { _, err := c.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); return err })
		if running {
			if err := c.PlayKubelet(ctx, ns, name, "127.0.0.1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	enabled := func(id string, metrics int, more ...string) map[string]string {
		a := map[string]string{"dapr.io/enabled": "true", "dapr.io/app-id": id, "dapr.io/metrics-port": strconv.Itoa(metrics)}
		for i := 0; i+1 < len(more); i += 2 {
			a[more[i]] = more[i+1]
		}
		return a
	}
	pod("shop", "orders-0", enabled("orders", orders.metrics), true, true)
	pod("web", "front-0", enabled("front", front.metrics), true, true)
	pod("shop", "orders-pending", enabled("orders", orders.metrics), true, false)
	pod("shop", "orders-bare", enabled("orders", orders.metrics), false, true)
	pod("web", "front-nometrics", enabled("front", front.metrics, "dapr.io/enable-metrics", "false"), true, true)
	pod("web", "plain", map[string]string{"dapr.io/app-id": "plain"}, false, true)

	// The chart's service account for the dashboard, and its arguments
	// (but the address it listens on).
	kubeconfig, chartArgs := chartKubeconfig(t, ctx, c, dir)
	if !slices.Contains(chartArgs, "--kubernetes") {
		t.Fatalf("the chart's dashboard runs with %v", chartArgs)
	}
	dash := startKubeDashboard(t, kubeconfig, chartArgs...)
	a := awaitKube(t, dash, "both sidecars read", func(a kubeApps) bool {
		i, ok := a.pod("shop", "orders-0")
		j, ok2 := a.pod("web", "front-0")
		return ok && ok2 && a.Apps[i].Metadata == "ok" && a.Apps[j].Metadata == "ok" && a.Apps[i].Health == "healthy"
	})
	if a.Kubernetes != "all namespaces" {
		t.Errorf("kubernetes %q, want all namespaces", a.Kubernetes)
	}
	if len(a.Apps) != 5 {
		t.Errorf("%d apps, want the 5 annotated pods: %+v", len(a.Apps), a.Apps)
	}
	if _, ok := a.pod("web", "plain"); ok {
		t.Error("a pod without dapr.io/enabled is listed")
	}
	i, _ := a.pod("shop", "orders-0")
	o := a.Apps[i]
	if o.AppID != "orders" || o.Mode != "kubernetes" || o.HTTPPort != orders.httpPort || len(o.Components) != 1 || o.Components[0].Name != "statestore" || o.Components[0].Type != "state.in-memory" {
		t.Errorf("orders-0: %+v", o)
	}
	for _, c := range []struct{ pod, ns, health, why string }{
		{"orders-pending", "shop", "unreachable", "the pod is Pending"},
		{"orders-bare", "shop", "unreachable", "no daprd container"},
		{"front-nometrics", "web", "unreachable", `dapr.io/enable-metrics is "false"`},
	} {
		i, ok := a.pod(c.ns, c.pod)
		if !ok || a.Apps[i].Health != c.health || !strings.Contains(a.Apps[i].MetadataErr, c.why) || a.Apps[i].Metadata != "error" {
			t.Errorf("%s/%s: %+v, want %s and %q", c.ns, c.pod, a.Apps[min(max(i, 0), len(a.Apps)-1)], c.health, c.why)
		}
	}
	raw := getRaw(t, dash+"/api/apps")
	for _, bad := range []string{"api-token-51c9", "component-value-7f3a", c.Token} {
		if strings.Contains(raw, bad) {
			t.Errorf("GET /api/apps shows %q", bad)
		}
	}
	// The map reads the sidecars' metrics at the pods' IP; the pods that
	// cannot be read are named with why.
	mp := getRaw(t, dash+"/api/map?window=1m")
	if !strings.Contains(mp, `"pod":"shop/orders-pending"`) || strings.Contains(mp, `"pod":"shop/orders-0"`) {
		t.Errorf("GET /api/map: %s", mp)
	}

	// One namespace.
	shop := startKubeDashboard(t, kubeconfig, "--kubernetes", "--namespace", "shop")
	a = awaitKube(t, shop, "the shop's sidecar read", func(a kubeApps) bool {
		i, ok := a.pod("shop", "orders-0")
		return ok && a.Apps[i].Metadata == "ok"
	})
	if a.Kubernetes != "namespace shop" || len(a.Apps) != 3 {
		t.Errorf("--namespace shop: %s, %d apps: %+v", a.Kubernetes, len(a.Apps), a.Apps)
	}

	// A sidecar that stops answering is unreachable (its pod still running).
	_ = orders.p.Stop(syscall.SIGKILL, 10*time.Second)
	awaitKube(t, dash, "orders unreachable", func(a kubeApps) bool {
		i, ok := a.pod("shop", "orders-0")
		return ok && a.Apps[i].Health == "unreachable"
	})
}

// chartKubeconfig creates the dashboard's ServiceAccount, ClusterRole and
// ClusterRoleBinding as the chart renders them with dashboard.enabled,
// checks that the account may not read Secrets or write pods, and writes a
// kubeconfig with a token of it. It returns the file and the arguments of
// the chart's dashboard container.
func chartKubeconfig(t *testing.T, ctx context.Context, c *kubecluster.Cluster, dir string) (string, []string) {
	t.Helper()
	out, err := exec.Command(toolbin.Path(t, "helm"), "template", "tandem", "../../charts/tandem", "--namespace", "tandem-system",
		"--set", "dashboard.enabled=true", "--show-only", "templates/dashboard.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	var args []string
	for doc := range strings.SplitSeq(string(out), "\n---\n") {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		var err error
		switch meta.Kind {
		case "ServiceAccount":
			var o corev1.ServiceAccount
			mustDecode(t, doc, &o)
			_, err = c.Client.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, &o, metav1.CreateOptions{})
		case "ClusterRole":
			var o rbacv1.ClusterRole
			mustDecode(t, doc, &o)
			_, err = c.Client.RbacV1().ClusterRoles().Create(ctx, &o, metav1.CreateOptions{})
		case "ClusterRoleBinding":
			var o rbacv1.ClusterRoleBinding
			mustDecode(t, doc, &o)
			_, err = c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &o, metav1.CreateOptions{})
		case "Deployment":
			var o appsv1.Deployment
			mustDecode(t, doc, &o)
			args = o.Spec.Template.Spec.Containers[0].Args
		}
		if err != nil {
			t.Fatalf("%s: %v", meta.Kind, err)
		}
	}
	const ns, name = "tandem-system", "tandem-dashboard"
	user := "system:serviceaccount:" + ns + ":" + name
	for _, c2 := range []struct {
		attr authzv1.ResourceAttributes
		want bool
	}{
		{authzv1.ResourceAttributes{Verb: "list", Resource: "pods"}, true},
		{authzv1.ResourceAttributes{Verb: "watch", Resource: "pods", Namespace: "shop"}, true},
		{authzv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: "shop"}, false},
		{authzv1.ResourceAttributes{Verb: "list", Resource: "secrets"}, false},
		{authzv1.ResourceAttributes{Verb: "delete", Resource: "pods", Namespace: "shop"}, false},
		{authzv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "portforward", Namespace: "shop"}, false},
		{authzv1.ResourceAttributes{Verb: "get", Resource: "components", Group: "dapr.io", Namespace: "shop"}, false},
	} {
		r, err := c.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}, ResourceAttributes: &c2.attr}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status.Allowed != c2.want {
			t.Errorf("the chart's dashboard account may %s %s %s: %v, want %v", c2.attr.Verb, c2.attr.Resource, c2.attr.Subresource, r.Status.Allowed, c2.want)
		}
	}
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"apiVersion": "v1", "kind": "Config", "current-context": "dashboard",
		"clusters": []any{map[string]any{"name": "test", "cluster": map[string]any{"server": c.URL, "certificate-authority-data": ca}}},
		"users":    []any{map[string]any{"name": "dashboard", "user": map[string]any{"token": tr.Status.Token}}},
		"contexts": []any{map[string]any{"name": "dashboard", "context": map[string]any{"cluster": "test", "user": "dashboard"}}},
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "dashboard.kubeconfig")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, args
}

func mustDecode(t *testing.T, doc string, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
}

// startKubeDashboard runs the dashboard with args, on a free loopback
// port (its --listen replaced) and with kubeconfig.
func startKubeDashboard(t *testing.T, kubeconfig string, args ...string) string {
	pt := proc.For(t)
	addr := "127.0.0.1:" + strconv.Itoa(pt.FreePort())
	args = slices.DeleteFunc(slices.Clone(args), func(a string) bool { return strings.HasPrefix(a, "--listen") })
	pt.Start("dashboard", dashboardBin, []string{"KUBECONFIG="}, append(args, "--listen", addr, "--kubeconfig", kubeconfig)...)
	pt.WaitTCP(addr, listenWait)
	return "http://" + addr
}

func awaitKube(t *testing.T, dash, what string, ok func(kubeApps) bool) kubeApps {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last kubeApps
	var lastErr error
	for time.Now().Before(deadline) {
		var a kubeApps
		b, err := tryGet(dash + "/api/apps")
		if err == nil {
			err = json.Unmarshal(b, &a)
		}
		if lastErr = err; err == nil {
			last = a
			if ok(a) {
				return a
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := json.MarshalIndent(last, "", "  ")
	t.Fatalf("%s: not within a minute (last error %v); last answer:\n%s", what, lastErr, b)
	return last
}

func tryGet(url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return b, nil
}

func getRaw(t *testing.T, url string) string {
	t.Helper()
	b, err := tryGet(url)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// until retries f until it succeeds or ctx ends; an object that exists
// already is a success.
func until(t *testing.T, ctx context.Context, what string, f func() error) {
	t.Helper()
	for {
		err := f()
		if err == nil || apierrors.IsAlreadyExists(err) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func readObject(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(bytes.TrimSpace(b), &m); err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}
