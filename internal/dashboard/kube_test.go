package dashboard

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPodTarget: where a pod's sidecar is read, from its annotations and
// status, and why it cannot be when it cannot.
func TestPodTarget(t *testing.T) {
	running := corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.1.2.3"}
	withSidecar := corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, {Name: "daprd"}}}
	native := corev1.PodSpec{InitContainers: []corev1.Container{{Name: "daprd"}}, Containers: []corev1.Container{{Name: "app"}}}
	for _, c := range []struct {
		name     string
		ann      map[string]string
		spec     corev1.PodSpec
		status   corev1.PodStatus
		port     int
		unread   string
		restarts string
	}{
		{"defaults", nil, withSidecar, running, 9090, "", ""},
		{"native sidecar", nil, native, running, 9090, "", ""},
		{"metrics port annotated", map[string]string{"dapr.io/metrics-port": "9999"}, withSidecar, running, 9999, "", ""},
		{"metrics port not a port", map[string]string{"dapr.io/metrics-port": "99999"}, withSidecar, running, 99999, `dapr.io/metrics-port "99999" is not a port`, ""},
		{"metrics port not a number", map[string]string{"dapr.io/metrics-port": "x"}, withSidecar, running, 0, `dapr.io/metrics-port "x" is not a port`, ""},
		{"metrics off", map[string]string{"dapr.io/enable-metrics": "false"}, withSidecar, running, 9090, `dapr.io/enable-metrics is "false"`, ""},
		{"pending", nil, withSidecar, corev1.PodStatus{Phase: corev1.PodPending}, 9090, "the pod is Pending", ""},
		{"no IP", nil, withSidecar, corev1.PodStatus{Phase: corev1.PodRunning}, 9090, "no IP address yet", ""},
		{"an IP that is not one", nil, withSidecar, corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "evil.example"}, 9090, "no IP address yet", ""},
		{"no sidecar", nil, corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}, running, 9090, "no daprd container", ""},
		{"restarted sidecar", nil, withSidecar, corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.1.2.3",
			ContainerStatuses: []corev1.ContainerStatus{{Name: "daprd", RestartCount: 3}}}, 9090, "", "/3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "orders-0", Namespace: "shop", UID: "u1", Annotations: map[string]string{"dapr.io/app-id": "orders"}}, Spec: c.spec, Status: c.status}
			for k, v := range c.ann {
				p.Annotations[k] = v
			}
			got := podTarget(p)
			if got.AppID != "orders" || got.Namespace != "shop" || got.host != c.status.PodIP || got.metricsPort != c.port || got.key != "u1"+c.restarts {
				t.Errorf("target %+v", got)
			}
			if c.unread == "" && got.unread != "" || !strings.Contains(got.unread, c.unread) {
				t.Errorf("unread %q, want %q", got.unread, c.unread)
			}
		})
	}
}

// TestPodHealth: without the route, a pod's sidecar's health is its
// container's readiness.
func TestPodHealth(t *testing.T) {
	pod := func(st ...corev1.ContainerStatus) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: st}}
	}
	for _, c := range []struct {
		p    *corev1.Pod
		want string
	}{
		{pod(), Unreachable},
		{pod(corev1.ContainerStatus{Name: "daprd", Ready: true}), Healthy},
		{pod(corev1.ContainerStatus{Name: "daprd", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}), Unhealthy},
		{pod(corev1.ContainerStatus{Name: "daprd", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}), Unreachable},
		{pod(corev1.ContainerStatus{Name: "app", Ready: true}), Unreachable},
	} {
		if got, _ := podHealth(c.p, "why"); got != c.want {
			t.Errorf("%+v: %s, want %s", c.p.Status.ContainerStatuses, got, c.want)
		}
	}
}
