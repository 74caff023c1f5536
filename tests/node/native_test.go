package node

import (
	"context"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// callerJob is a Job whose app calls addapp through its sidecar once, with
// no retry, and exits; args go before the call's.
func callerJob(name string, annotations map[string]string, args ...string) *batchv1.Job {
	zero, no, yes, user := int32(0), false, true, int64(65532)
	ann := map[string]string{"dapr.io/enabled": "true", "dapr.io/app-id": name}
	for k, v := range annotations {
		ann[k] = v
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: &zero,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: ann, Labels: map[string]string{"job": name}},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{
						Name: "caller", Image: built["caller"].Ref, ImagePullPolicy: corev1.PullNever,
						Args: append(args, "-app", "addapp", "-method", "add", "-body", `{"operandOne":"52","operandTwo":"34"}`, "-want", "86"),
						SecurityContext: &corev1.SecurityContext{
							RunAsNonRoot: &yes, RunAsUser: &user, AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
				},
			},
		},
	}
}

// jobPod is the pod of a Job.
func jobPod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	pods := podsWith("default", labels.SelectorFromSet(labels.Set{"job": name}))
	if len(pods) != 1 {
		t.Fatalf("job %s has %d pods", name, len(pods))
	}
	return &pods[0]
}

func deleteJob(name string) {
	bg := metav1.DeletePropagationBackground
	_ = cluster.Client.BatchV1().Jobs("default").Delete(context.Background(), name, metav1.DeleteOptions{PropagationPolicy: &bg})
}

// TestJobWithNativeSidecar: a Job's app starts only once its native sidecar
// serves (its one call, not retried, succeeds), and the Job completes when
// the app exits: the kubelet then stops the sidecar.
func TestJobWithNativeSidecar(t *testing.T) {
	calculator(t)
	ctx := ctxT(t, 3*time.Minute)
	jobs := cluster.Client.BatchV1().Jobs("default")
	if _, err := jobs.Create(ctx, callerJob("native-job", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteJob("native-job") })
	for {
		j, err := jobs.Get(ctx, "native-job", metav1.GetOptions{})
		if err == nil && j.Status.Succeeded == 1 {
			break
		}
		if err == nil && j.Status.Failed > 0 {
			p := jobPod(t, "native-job")
			t.Fatalf("the job failed: %s\n%s", describe(p), podLog(t, p, "caller"))
		}
		select {
		case <-ctx.Done():
			p := jobPod(t, "native-job")
			t.Fatalf("the job did not complete: %s\n%s", describe(p), podLog(t, p, "caller"))
		case <-time.After(250 * time.Millisecond):
		}
	}
	p := jobPod(t, "native-job")
	if len(p.Spec.InitContainers) != 1 || p.Spec.InitContainers[0].Name != "daprd" || len(p.Spec.Containers) != 1 {
		t.Errorf("not a native sidecar: init containers %d, containers %d", len(p.Spec.InitContainers), len(p.Spec.Containers))
	}
	if p.Status.Phase != corev1.PodSucceeded {
		t.Errorf("the job's pod is %s, want Succeeded: %s", p.Status.Phase, describe(p))
	}
	if out := podLog(t, p, "caller"); !strings.Contains(out, "1 calls succeeded, 0 failed") {
		t.Errorf("the app says: %s", out)
	}
}

// TestJobWithClassicSidecar: with dapr.io/enable-native-sidecar "false" the
// app must wait for its sidecar before calling, and its sidecar runs on
// after the app exits, so the Job never completes: why native sidecars are
// the default.
func TestJobWithClassicSidecar(t *testing.T) {
	calculator(t)
	ctx := ctxT(t, 3*time.Minute)
	if _, err := cluster.Client.BatchV1().Jobs("default").Create(ctx, callerJob("classic-job", map[string]string{"dapr.io/enable-native-sidecar": "false"}, "-wait-sidecar", "1m"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteJob("classic-job") })
	for {
		pods := podsWith("default", labels.SelectorFromSet(labels.Set{"job": "classic-job"}))
		if len(pods) == 1 && exited(&pods[0], "caller") {
			p := &pods[0]
			if code := p.Status.ContainerStatuses[containerIndex(p, "caller")].State.Terminated.ExitCode; code != 0 {
				t.Fatalf("the app exited %d: %s", code, podLog(t, p, "caller"))
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the app of the classic job did not exit")
		case <-time.After(250 * time.Millisecond):
		}
	}
	time.Sleep(3 * time.Second)
	j, err := cluster.Client.BatchV1().Jobs("default").Get(ctx, "classic-job", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := jobPod(t, "classic-job")
	if j.Status.Succeeded != 0 || p.Status.Phase != corev1.PodRunning || len(p.Spec.InitContainers) != 0 {
		t.Errorf("classic sidecar: job succeeded %d, pod %s, init containers %d; want the pod Running on its sidecar", j.Status.Succeeded, p.Status.Phase, len(p.Spec.InitContainers))
	}
}

func containerIndex(p *corev1.Pod, name string) int {
	for i, cs := range p.Status.ContainerStatuses {
		if cs.Name == name {
			return i
		}
	}
	return -1
}

// exited says whether the pod's container has terminated.
func exited(p *corev1.Pod, name string) bool {
	i := containerIndex(p, name)
	return i >= 0 && p.Status.ContainerStatuses[i].State.Terminated != nil
}

// podLog is a container's log.
func podLog(t *testing.T, p *corev1.Pod, container string) string {
	t.Helper()
	b, err := cluster.Client.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: container}).DoRaw(ctxT(t, 30*time.Second))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(b)
}

// TestAPITokenFromSecret: a sidecar annotated dapr.io/api-token-secret takes
// its token from the Secret (the kubelet fills the variable the injector
// points at it): an app sending that token gets its call through, and one
// sending none is refused.
func TestAPITokenFromSecret(t *testing.T) {
	calculator(t)
	ctx := ctxT(t, 3*time.Minute)
	secrets := cluster.Client.CoreV1().Secrets("default")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "caller-token"}, StringData: map[string]string{"token": "s3cret-from-a-secret"}}
	if _, err := secrets.Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = secrets.Delete(context.Background(), "caller-token", metav1.DeleteOptions{}) })
	ann := map[string]string{"dapr.io/api-token-secret": "caller-token"}
	with := callerJob("token-job", ann)
	with.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "DAPR_API_TOKEN", ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "caller-token"}, Key: "token"},
	}}}
	without := callerJob("no-token-job", ann)
	for _, j := range []*batchv1.Job{with, without} {
		if _, err := cluster.Client.BatchV1().Jobs("default").Create(ctx, j, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { deleteJob(j.Name) })
	}
	done := func(name string) *batchv1.Job {
		for {
			j, err := cluster.Client.BatchV1().Jobs("default").Get(ctx, name, metav1.GetOptions{})
			if err == nil && j.Status.Succeeded+j.Status.Failed > 0 {
				return j
			}
			select {
			case <-ctx.Done():
				t.Fatalf("job %s did not finish", name)
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	if j := done("token-job"); j.Status.Succeeded != 1 {
		t.Errorf("with the Secret's token the call failed: %s", podLog(t, jobPod(t, "token-job"), "caller"))
	}
	if j := done("no-token-job"); j.Status.Failed != 1 {
		t.Errorf("without a token the call went through")
	} else if out := podLog(t, jobPod(t, "no-token-job"), "caller"); !strings.Contains(out, "401") {
		t.Errorf("without a token: %s, want a 401", out)
	}
	p := jobPod(t, "token-job")
	var env []corev1.EnvVar
	for _, c := range p.Spec.InitContainers {
		if c.Name == "daprd" {
			env = c.Env
		}
	}
	found := false
	for _, e := range env {
		if e.Name == "DAPR_API_TOKEN" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == "caller-token" {
			found = true
		}
	}
	if !found {
		t.Errorf("the sidecar's DAPR_API_TOKEN does not come from the Secret: %+v", env)
	}
}
