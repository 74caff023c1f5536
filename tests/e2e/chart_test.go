package e2e

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-run/tandem/internal/images"
	"github.com/tandem-run/tandem/internal/testutil/kubecluster"
	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/toolbin"
)

// TestHelmInstall installs the chart into a real API server with helm, runs
// the injector the chart describes (its Deployment's own arguments) as the
// pod the chart's Deployment made, and checks that the calculator's
// Deployments get their sidecars through the chart's webhook registration.
// No kubelet runs: the test plays it, binding the injector's pod to a node
// and marking it running on this host, so that Kubernetes routes the
// webhook to its endpoint.
func TestHelmInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kubernetes control plane")
	}
	appVersion, err := images.ChartAppVersion("../..")
	if err != nil {
		t.Fatal(err)
	}
	c := kubecluster.Start(t)
	helm := toolbin.Path(t, "helm")
	hostIP := hostAddress(t)
	port := proc.For(t).FreePort()
	out, err := exec.Command(helm, "install", "tandem", "../../charts/tandem",
		"--kubeconfig", c.Kubeconfig, "--namespace", "tandem-system", "--create-namespace",
		"--set", "injector.port="+strconv.Itoa(port), "--set", "webhook.failurePolicy=Fail",
		"--set", "zipkin.enabled=true", "--set", "redis.enabled=true", "--timeout", "60s").CombinedOutput()
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "dapr.io/enabled") || !strings.Contains(string(out), "port-forward svc/tandem-zipkin 9411") {
		t.Errorf("NOTES do not say how to annotate and open Zipkin:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := c.Client

	// The injector, as the chart runs it.
	d, err := client.AppsV1().Deployments("tandem-system").Get(ctx, "tandem-injector", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		if strings.HasPrefix(a, "--listen-address=") {
			a = "--listen-address=" + net.JoinHostPort(hostIP, strconv.Itoa(port))
		}
		args = append(args, a)
	}
	proc.For(t).Start("injector", injectorBin, []string{"NAMESPACE=tandem-system"}, append(args, "--kubeconfig", c.Kubeconfig)...)

	// Its pod, made by the chart's Deployment, "runs" here.
	var pod corev1.Pod
	for {
		pods, err := client.CoreV1().Pods("tandem-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=tandem-injector"})
		if err == nil && len(pods.Items) == 1 {
			pod = pods.Items[0]
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the chart's injector Deployment made no pod")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := c.PlayKubelet(ctx, "tandem-system", pod.Name, hostIP); err != nil {
		t.Fatal(err)
	}
	waitReadyEndpoint(t, ctx, client, "tandem-system", "tandem-injector")
	for {
		wc, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "tandem-injector", metav1.GetOptions{})
		if err == nil && len(wc.Webhooks[0].ClientConfig.CABundle) > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the injector did not set the caBundle of the chart's webhook")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The chart made the statestore and appconfig the calculator uses.
	ap := newApplier(t, c.Config)
	for _, o := range objects(t, "../../samples/calculator/deploy/addapp.yaml", "../../samples/calculator/deploy/calculator-front-end.yaml") {
		if o.GetKind() != "Deployment" {
			continue
		}
		if err := retry(ctx, func() error { return ap.create(ctx, "default", o) }); err != nil {
			t.Fatalf("%s: %v", o.GetName(), err)
		}
	}
	for _, id := range []string{"addapp", "calculator-front-end"} {
		p := waitPod(t, ctx, client, id)
		found := false
		for _, ctr := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			if ctr.Name == "daprd" {
				found = true
				if ctr.Image != "tandem/sidecar:"+appVersion || !strings.Contains(strings.Join(ctr.Args, " "), "--app-id "+id) {
					t.Errorf("%s sidecar %s %v", id, ctr.Image, ctr.Args)
				}
				if ctr.Resources.Requests.Memory().String() != "32Mi" || ctr.Resources.Limits.Memory().String() != "256Mi" {
					t.Errorf("%s sidecar resources %v", id, ctr.Resources)
				}
			}
		}
		if !found {
			t.Errorf("%s has no sidecar through the chart's webhook", id)
		}
	}
	for _, kind := range []string{"components", "configurations"} {
		if _, err := c.Client.Discovery().RESTClient().Get().AbsPath("/apis/dapr.io/v1alpha1/namespaces/default/" + kind).DoRaw(ctx); err != nil {
			t.Errorf("the chart's CRD %s: %v", kind, err)
		}
	}
	b, err := c.Client.Discovery().RESTClient().Get().AbsPath("/apis/dapr.io/v1alpha1/namespaces/default/components/statestore").DoRaw(ctx)
	if err != nil || !strings.Contains(string(b), "tandem-redis.tandem-system.svc.cluster.local:6379") {
		t.Errorf("the default statestore: %v %s", err, b)
	}
}

// waitReadyEndpoint waits until the Service has a ready endpoint.
func waitReadyEndpoint(t *testing.T, ctx context.Context, client kubernetes.Interface, ns, svc string) {
	t.Helper()
	for {
		slices, err := client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
		if err == nil {
			for _, s := range slices.Items {
				for _, e := range s.Endpoints {
					if e.Conditions.Ready != nil && *e.Conditions.Ready {
						return
					}
				}
			}
		}
		if ctx.Err() != nil {
			pods, _ := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
			for _, p := range pods.Items {
				t.Logf("pod %s: phase %s ip %s conditions %v node %q", p.Name, p.Status.Phase, p.Status.PodIP, p.Status.Conditions, p.Spec.NodeName)
			}
			t.Fatalf("Service %s/%s has no ready endpoint: slices %+v %v", ns, svc, slices, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
