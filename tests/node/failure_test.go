package node

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// injectorDown scales the injector to no replica and waits until its pod is
// gone; the returned function brings it back and waits until it is Ready
// and its webhook has its caBundle.
func injectorDown(t *testing.T) (up func()) {
	t.Helper()
	scaleIn := func(n int32) {
		patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
		if _, err := cluster.Client.AppsV1().Deployments(chartNS).Patch(ctxT(t, time.Minute), "tandem-injector", "application/strategic-merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	scaleIn(0)
	ctx := ctxT(t, 2*time.Minute)
	sel := labels.SelectorFromSet(labels.Set{"app.kubernetes.io/name": "tandem-injector"})
	for len(podsWith(chartNS, sel)) > 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the injector's pod does not go")
		case <-time.After(100 * time.Millisecond):
		}
	}
	return func() {
		scaleIn(1)
		waitAvailable(t, chartNS, 2*time.Minute, "tandem-injector")
		waitCABundle(t)
	}
}

// echoDeployment is a Deployment of one annotated pod of the operator image.
func echoDeployment(name string) *appsv1.Deployment {
	one := int32(1)
	lbl := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl, Annotations: map[string]string{
					"dapr.io/enabled": "true", "dapr.io/app-id": name, "dapr.io/app-port": "6000",
				}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: built["calculator-operator"].Ref, ImagePullPolicy: corev1.PullNever,
					Args: []string{"-op", "add"}, Env: []corev1.EnvVar{{Name: "APP_PORT", Value: "6000"}},
				}}},
			},
		},
	}
}

// TestInjectorDownIgnore: with the chart's failurePolicy Ignore, pods made
// while the injector is down start without a sidecar (1/1, no
// dapr.io/sidecar-injected annotation: what docs/kubernetes.md tells users to look
// for); once it is back, a rollout restart gives them one.
func TestInjectorDownIgnore(t *testing.T) {
	calculator(t)
	deps := cluster.Client.AppsV1().Deployments("default")
	up := injectorDown(t)
	t.Cleanup(func() { _ = deps.Delete(context.Background(), "lonely", metav1.DeleteOptions{}) })
	if _, err := deps.Create(ctxT(t, time.Minute), echoDeployment("lonely"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAvailable(t, "default", 2*time.Minute, "lonely")
	dep, _ := deps.Get(ctxT(t, time.Minute), "lonely", metav1.GetOptions{})
	for _, p := range deploymentPods("default", dep) {
		if sidecarImage(&p) != "" || p.Annotations["dapr.io/sidecar-injected"] != "" || len(p.Spec.Containers) != 1 {
			t.Errorf("a pod made while the injector was down got a sidecar: %v", p.Spec.Containers)
		}
	}
	up()
	restart(t, "default", "lonely")
	time.Sleep(time.Second)
	waitAvailable(t, "default", 2*time.Minute, "lonely")
	dep, _ = deps.Get(ctxT(t, time.Minute), "lonely", metav1.GetOptions{})
	for _, p := range deploymentPods("default", dep) {
		if p.DeletionTimestamp == nil && (sidecarImage(&p) != "tandem/sidecar:"+version || p.Annotations["dapr.io/sidecar-injected"] != "true") {
			t.Errorf("after the injector came back and a restart, pod %s has sidecar %q", p.Name, sidecarImage(&p))
		}
	}
}

// TestInjectorDownFail: with failurePolicy Fail, nothing the webhook sees
// (pods, and the Deployments whose annotations it checks) is made in the
// app namespaces while the injector is down: the refusal names the webhook.
// Once it is back, the same Deployment is made, its pod with a sidecar.
func TestInjectorDownFail(t *testing.T) {
	calculator(t)
	if out, err := helm(t, append([]string{"upgrade", "tandem", filepath.Join(repo, "charts", "tandem")}, append(chartArgs(), "--set", "webhook.failurePolicy=Fail")...)...); err != nil {
		t.Fatalf("helm upgrade --set webhook.failurePolicy=Fail: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := helm(t, append([]string{"upgrade", "tandem", filepath.Join(repo, "charts", "tandem")}, chartArgs()...)...); err != nil {
			t.Errorf("helm upgrade back to failurePolicy Ignore: %v\n%s", err, out)
		}
	})
	waitCABundle(t)
	deps := cluster.Client.AppsV1().Deployments("default")
	up := injectorDown(t)
	t.Cleanup(func() { _ = deps.Delete(context.Background(), "strict", metav1.DeleteOptions{}) })
	_, err := deps.Create(ctxT(t, time.Minute), echoDeployment("strict"), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "sidecar-injector.tandem.dev") {
		t.Fatalf("creating a Deployment while the injector is down with failurePolicy Fail: %v; want a refusal naming the webhook", err)
	}
	t.Logf("refused while the injector is down: %v", err)
	up()
	if _, err := deps.Create(ctxT(t, time.Minute), echoDeployment("strict"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the Deployment once the injector is back: %v", err)
	}
	waitAvailable(t, "default", 3*time.Minute, "strict")
	dep, _ := deps.Get(ctxT(t, time.Minute), "strict", metav1.GetOptions{})
	for _, p := range deploymentPods("default", dep) {
		if sidecarImage(&p) != "tandem/sidecar:"+version {
			t.Errorf("pod %s made once the injector was back has sidecar %q", p.Name, sidecarImage(&p))
		}
	}
}

// TestSidecarKilled: addapp's sidecar is killed (SIGKILL to its process,
// under calls through the front end); the kubelet restarts it and the calls
// recover.
func TestSidecarKilled(t *testing.T) {
	calculator(t)
	url := frontEnd(t)
	dep, err := cluster.Client.AppsV1().Deployments("default").Get(ctxT(t, time.Minute), "addapp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods := deploymentPods("default", dep)
	if len(pods) != 1 {
		t.Fatalf("addapp has %d pods", len(pods))
	}
	p := &pods[0]
	restarts, id := sidecarStatus(p)
	if id == "" {
		t.Fatalf("addapp's sidecar has no container: %s", describe(p))
	}
	if out, err := cluster.Ctr(context.Background(), "tasks", "kill", "--signal", "SIGKILL", id); err != nil {
		t.Fatalf("killing the sidecar: %v %s", err, out)
	}
	killed := time.Now()
	ctx := ctxT(t, 2*time.Minute)
	var failed int
	for ok := 0; ok < 100; {
		if code, body := post(t, url+"/calculate/add", `{"operandOne":"52","operandTwo":"34"}`); code == 200 && strings.TrimSpace(body) == "86" {
			ok++
		} else {
			ok = 0
			failed++
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the calls did not recover after the sidecar was killed (%d failed)", failed)
		case <-time.After(20 * time.Millisecond):
		}
	}
	p, err = cluster.Client.CoreV1().Pods("default").Get(ctxT(t, time.Minute), p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := sidecarStatus(p); after != restarts+1 {
		t.Errorf("the sidecar restarted %d times, want %d", after, restarts+1)
	}
	t.Logf("sidecar killed: %d calls failed, 100 in a row succeeded %s after the kill", failed, time.Since(killed).Round(100*time.Millisecond))
}

// sidecarStatus is the restart count and containerd ID of a pod's sidecar.
func sidecarStatus(p *corev1.Pod) (restarts int32, id string) {
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if cs.Name == "daprd" {
			return cs.RestartCount, strings.TrimPrefix(cs.ContainerID, "containerd://")
		}
	}
	return 0, ""
}
