package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-run/tandem/internal/testutil/node"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// namespace makes a namespace for the test and deletes it afterwards.
func namespace(t *testing.T, name string) string {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	_, err := cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	// Pods are refused until the controller has made the default
	// service account.
	for {
		if _, err := cluster.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			return name
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no default service account in namespace %s", name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitPod waits until the pod is Running and Ready and returns it; on
// timeout it fails naming its phase, conditions and containers' states.
func waitPod(t *testing.T, cs kubernetes.Interface, ns, name string, d time.Duration) *corev1.Pod {
	t.Helper()
	ctx := ctxT(t, d)
	var last *corev1.Pod
	for {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = p
			if p.Status.Phase == corev1.PodRunning && podReady(p) {
				return p
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s/%s not Running and Ready after %s: %s", ns, name, d, describe(last))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// describe says where a pod is: its phase, conditions and containers.
func describe(p *corev1.Pod) string {
	if p == nil {
		return "no pod"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phase %s", p.Status.Phase)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, "; %s=%s %s", c.Type, c.Status, c.Message)
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		fmt.Fprintf(&b, "; container %s ready=%v restarts=%d %+v", cs.Name, cs.Ready, cs.RestartCount, cs.State)
	}
	return b.String()
}

// TestPodFromPackedImage: a pod of the calculator's operator image, built
// here and imported into containerd, runs as a non-root user with a
// read-only root and no capabilities, becomes Ready by its probe, and
// answers on its pod IP over the bridge.
func TestPodFromPackedImage(t *testing.T) {
	ns := namespace(t, "smoke")
	no, yes, user := false, true, int64(65532)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "add"},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:            "add",
				Image:           built["calculator-operator"].Ref,
				ImagePullPolicy: corev1.PullNever,
				Args:            []string{"-op", "add"},
				Env:             []corev1.EnvVar{{Name: "APP_PORT", Value: "6000"}},
				Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 6000}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}},
					PeriodSeconds: 1,
				},
				SecurityContext: &corev1.SecurityContext{
					RunAsNonRoot: &yes, RunAsUser: &user, AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
	start := time.Now()
	if _, err := cluster.Client.CoreV1().Pods(ns).Create(ctxT(t, time.Minute), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := waitPod(t, cluster.Client, ns, "add", 2*time.Minute)
	t.Logf("pod Ready %s after creation, at %s", time.Since(start).Round(100*time.Millisecond), p.Status.PodIP)
	if !strings.HasPrefix(p.Status.PodIP, "10.244.0.") {
		t.Errorf("pod IP %q is not on the bridge", p.Status.PodIP)
	}
	resp, err := http.Post("http://"+p.Status.PodIP+":6000/add", "application/json", strings.NewReader(`{"operandOne":"52","operandTwo":"34"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "86" {
		t.Errorf("POST /add: %d %q, want 200 86", resp.StatusCode, body)
	}
}

// TestNetworkStaysOnMachine: forwarding is off while pods run, nothing
// masquerades, a pod's only routes are the bridge's subnet and the service
// range through the bridge address, and a pod reaches the API server
// through the kubernetes Service's cluster IP (the service proxy).
func TestNetworkStaysOnMachine(t *testing.T) {
	ns := namespace(t, "net")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pause"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "pause", Image: built["pause"].Ref, ImagePullPolicy: corev1.PullNever,
		}}},
	}
	if _, err := cluster.Client.CoreV1().Pods(ns).Create(ctxT(t, time.Minute), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := waitPod(t, cluster.Client, ns, "pause", 2*time.Minute)

	if fwd, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(string(fwd)) != "0" {
		t.Errorf("net.ipv4.ip_forward is %q while the node runs", fwd)
	}
	if out, _ := exec.Command("iptables-save").Output(); strings.Contains(string(out), "MASQUERADE") || strings.Contains(string(out), "SNAT") {
		t.Errorf("iptables masquerades:\n%s", out)
	}
	netns := cluster.PodNetNS(t, p)
	out, err := exec.Command("nsenter", "--net="+netns, "ip", "-4", "route").CombinedOutput()
	if err != nil {
		t.Fatalf("ip route in the pod: %v\n%s", err, out)
	}
	var routes []string
	for l := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		routes = append(routes, strings.Join(strings.Fields(l)[:3], " "))
	}
	slices.Sort(routes)
	if want := []string{"10.244.0.0/24 dev eth0", "10.96.0.0/16 via 10.244.0.1"}; !slices.Equal(routes, want) {
		t.Errorf("the pod's routes: %q, want %q\n%s", routes, want, out)
	}
	// From the pod's network: the kubernetes Service answers TLS with the
	// API server's certificate.
	script := `exec 3<>/dev/tcp/` + node.APIServiceIP + `/443 && echo connected`
	if out, err := exec.Command("nsenter", "--net="+netns, "bash", "-c", script).CombinedOutput(); err != nil || !strings.Contains(string(out), "connected") {
		t.Errorf("the pod cannot reach %s:443: %v %s", node.APIServiceIP, err, out)
	}
	// A packet for an address outside the machine has no route.
	if out, err := exec.Command("nsenter", "--net="+netns, "ip", "route", "get", "192.0.2.1").CombinedOutput(); err == nil {
		t.Errorf("the pod has a route out: %s", out)
	}
}
