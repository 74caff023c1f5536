package injector

import (
	"encoding/json"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func reviewOf(kind, user string, obj string) *admissionv1.AdmissionReview {
	return &admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "uid-1",
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: kind},
			Namespace: "default",
			Name:      "x",
			Operation: admissionv1.Create,
			UserInfo:  authnv1.UserInfo{Username: user},
			Object:    runtime.RawExtension{Raw: []byte(obj)},
		},
	}
}

const (
	rsController = "system:serviceaccount:kube-system:replicaset-controller"
	goodPod      = `{"metadata":{"generateName":"addapp-","annotations":{"dapr.io/enabled":"true","dapr.io/app-id":"addapp"}},"spec":{"containers":[{"name":"app","image":"app"}]}}`
	badPod       = `{"metadata":{"name":"p","annotations":{"dapr.io/enabled":"true","dapr.io/app-id":"addapp","dapr.io/app-port":"0"}},"spec":{"containers":[{"name":"app","image":"app"}]}}`
)

func TestReviewInjectsPodsOfWorkloadControllers(t *testing.T) {
	out := Review(testConfig, reviewOf("Pod", rsController, goodPod))
	r := out.Response
	if out.Kind != "AdmissionReview" || out.APIVersion != "admission.k8s.io/v1" || r.UID != "uid-1" || !r.Allowed {
		t.Fatalf("review %+v", out)
	}
	if r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type %v", r.PatchType)
	}
	var ops []PatchOp
	if err := json.Unmarshal(r.Patch, &ops); err != nil || len(ops) == 0 || ops[0].Path != "/spec/containers/-" {
		t.Errorf("patch %s %v", r.Patch, err)
	}
}

func TestReviewOtherUsersAreNotInjected(t *testing.T) {
	r := Review(testConfig, reviewOf("Pod", "kubernetes-admin", goodPod)).Response
	if !r.Allowed || r.Patch != nil {
		t.Fatalf("a pod created by a user was patched: %+v", r)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "kubernetes-admin") || !strings.Contains(r.Warnings[0], "--allowed-users") {
		t.Errorf("warnings %v", r.Warnings)
	}
	// A user named in the configuration is injected.
	cfg := testConfig
	cfg.AllowedUsers = append([]string{"kubernetes-admin"}, cfg.AllowedUsers...)
	if r := Review(cfg, reviewOf("Pod", "kubernetes-admin", goodPod)).Response; r.Patch == nil {
		t.Error("an allowed user's pod was not injected")
	}
}

func TestReviewRefusesBadAnnotations(t *testing.T) {
	for _, c := range []struct {
		kind, user, obj string
	}{
		{"Pod", rsController, badPod},
		{"Pod", "kubernetes-admin", badPod},
		{"Deployment", "kubernetes-admin", `{"spec":{"template":{"metadata":{"annotations":{"dapr.io/enabled":"true","dapr.io/app-id":"addapp","dapr.io/app-port":"0"}}}}}`},
		{"StatefulSet", "kubernetes-admin", `{"spec":{"template":{"metadata":{"annotations":{"dapr.io/enabled":"true","dapr.io/app-id":"addapp","dapr.io/app-port":"0"}}}}}`},
	} {
		r := Review(testConfig, reviewOf(c.kind, c.user, c.obj)).Response
		if r.Allowed || r.Result == nil || !strings.Contains(r.Result.Message, `dapr.io/app-port "0" is not a port; accepted: 1 to 65535`) || r.Result.Code != 422 {
			t.Errorf("%s by %s: %+v", c.kind, c.user, r.Result)
		}
	}
}

func TestReviewPassesEverythingElse(t *testing.T) {
	for _, c := range []struct {
		kind, obj string
		op        admissionv1.Operation
	}{
		{"Pod", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"a"}]}}`, admissionv1.Create},
		{"Pod", goodPod, admissionv1.Delete},
		{"Pod", goodPod, admissionv1.Update},
		{"ConfigMap", `{}`, admissionv1.Create},
		{"Deployment", `{"spec":{"template":{"metadata":{"annotations":{"dapr.io/enabled":"false","dapr.io/app-id":"BAD"}}}}}`, admissionv1.Create},
	} {
		ar := reviewOf(c.kind, rsController, c.obj)
		ar.Request.Operation = c.op
		if r := Review(testConfig, ar).Response; !r.Allowed || r.Patch != nil || r.UID != "uid-1" {
			t.Errorf("%s %s: %+v", c.op, c.kind, r)
		}
	}
	if r := Review(testConfig, reviewOf("Pod", rsController, `{not json`)).Response; r.Allowed {
		t.Error("an unreadable pod was allowed")
	}
	if r := Review(testConfig, &admissionv1.AdmissionReview{}).Response; r.Allowed {
		t.Error("a review without a request was allowed")
	}
}

// TestReviewRefusesOwnedEnvAndOutOfRange: a dapr.io/env that sets a
// variable the injector owns, and numbers past their range, are refused
// at admission for pods (whoever creates them) and for workloads, with the
// message naming them.
func TestReviewRefusesOwnedEnvAndOutOfRange(t *testing.T) {
	for _, c := range []struct {
		ann  string // JSON of the dapr.io annotations beyond enabled and app-id
		want string
	}{
		{`"dapr.io/api-token-secret":"api","dapr.io/env":"DAPR_API_TOKEN=guessed"`, "dapr.io/env sets DAPR_API_TOKEN, which the injector sets itself"},
		{`"dapr.io/env":"NAMESPACE=kube-system"`, "dapr.io/env sets NAMESPACE, which the injector sets itself"},
		{`"dapr.io/sidecar-memory-limit":"999999Ei"`, `dapr.io/sidecar-memory-limit "999999Ei" is not valid; accepted: a positive quantity of memory up to 64Ti`},
		{`"dapr.io/sidecar-cpu-request":"1e100"`, `dapr.io/sidecar-cpu-request "1e100" is not valid; accepted: a positive quantity of CPUs up to 1024`},
		{`"dapr.io/app-max-concurrency":"9223372036854775807"`, `dapr.io/app-max-concurrency "9223372036854775807" is not valid; accepted: -1 or 0 for no bound, or 1 to 1048576`},
		{`"dapr.io/http-read-buffer-size":"8193"`, `dapr.io/http-read-buffer-size "8193" is not valid; accepted: -1 for the sidecar's default (64 KB), or 1 to 8192 KB`},
	} {
		ann := `{"dapr.io/enabled":"true","dapr.io/app-id":"addapp",` + c.ann + `}`
		pod := `{"metadata":{"name":"p","annotations":` + ann + `},"spec":{"containers":[{"name":"app","image":"app"}]}}`
		workload := `{"spec":{"template":{"metadata":{"annotations":` + ann + `}}}}`
		for _, r := range []struct{ kind, user, obj string }{
			{"Pod", rsController, pod},
			{"Pod", "kubernetes-admin", pod},
			{"Deployment", "kubernetes-admin", workload},
			{"StatefulSet", "kubernetes-admin", workload},
			{"DaemonSet", "kubernetes-admin", workload},
			{"ReplicaSet", rsController, workload},
		} {
			out := Review(testConfig, reviewOf(r.kind, r.user, r.obj)).Response
			if out.Allowed || out.Patch != nil || out.Result == nil || out.Result.Code != 422 || !strings.Contains(out.Result.Message, c.want) {
				t.Errorf("%s by %s with %s: %+v", r.kind, r.user, c.ann, out.Result)
			}
		}
	}
}
