package injector

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Review answers one AdmissionReview. It is pure: the answer depends only
// on cfg and the request, so it never waits on the network.
//
//   - Pods created by an allowed user (a workload controller) that ask for a
//     sidecar get the patch that adds it.
//   - Pods and workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet)
//     whose dapr.io annotations are invalid are refused with a message that
//     names each bad annotation, so `kubectl apply` of a Deployment fails at
//     once rather than its pods later.
//   - Everything else passes untouched; a pod that asks for a sidecar but
//     was created by another user passes with a warning saying why it was
//     not injected.
func Review(cfg Config, in *admissionv1.AdmissionReview) *admissionv1.AdmissionReview {
	out := &admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}}
	req := in.Request
	if req == nil {
		out.Response = deny("the AdmissionReview has no request")
		return out
	}
	out.Response = review(cfg, req)
	out.Response.UID = req.UID
	return out
}

func review(cfg Config, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return allow
	}
	switch req.Kind.Kind {
	case "Pod":
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet":
		var w struct {
			Spec struct {
				Template corev1.PodTemplateSpec `json:"template"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(req.Object.Raw, &w); err != nil {
			return deny("cannot read the %s: %v", req.Kind.Kind, err)
		}
		if err := check(w.Spec.Template.Annotations); err != nil {
			return deny("%s %s/%s, pod template: %v", req.Kind.Kind, req.Namespace, req.Name, err)
		}
		return allow
	default:
		return allow
	}
	if req.Operation != admissionv1.Create {
		return allow
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return deny("cannot read the pod: %v", err)
	}
	name := podName(&pod, req)
	if !slices.Contains(cfg.AllowedUsers, req.UserInfo.Username) {
		if err := check(pod.Annotations); err != nil {
			return deny("pod %s: %v", name, err)
		}
		if on, _ := Enabled(pod.Annotations); on {
			allow.Warnings = []string{fmt.Sprintf("pod %s asks for a sidecar but was not injected: pods are injected only when a workload controller creates them (from a Deployment, StatefulSet, ...), and %q is not one of the allowed users; add it to the injector's --allowed-users to inject its pods", name, req.UserInfo.Username)}
		}
		return allow
	}
	ops, warnings, err := Inject(cfg, &pod)
	if err != nil {
		return deny("pod %s: %v", name, err)
	}
	allow.Warnings = warnings
	if len(ops) == 0 {
		return allow
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return deny("pod %s: building the patch: %v", name, err)
	}
	pt := admissionv1.PatchTypeJSONPatch
	allow.Patch, allow.PatchType = patch, &pt
	return allow
}

// check validates annotations that ask for a sidecar.
func check(a map[string]string) error {
	on, err := Enabled(a)
	if err != nil || !on {
		return err
	}
	_, err = ParseSpec(a)
	return err
}

func podName(pod *corev1.Pod, req *admissionv1.AdmissionRequest) string {
	n := pod.Name
	if n == "" {
		n = pod.GenerateName + "<generated>"
	}
	ns := req.Namespace
	if ns == "" {
		ns = pod.Namespace
	}
	return ns + "/" + n
}

func deny(format string, args ...any) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{
		Allowed: false,
		Result: &metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusUnprocessableEntity,
			Reason:  metav1.StatusReasonInvalid,
			Message: "tandem injector: " + fmt.Sprintf(format, args...),
		},
	}
}
