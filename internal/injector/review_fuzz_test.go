package injector

import (
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
)

// FuzzReview: any AdmissionReview body gets an answer, never a panic; the
// answer echoes the request's UID, and a patch is always valid JSON.
func FuzzReview(f *testing.F) {
	ar := reviewOf("Pod", rsController, goodPod)
	b, _ := json.Marshal(ar)
	f.Add(b)
	bad, _ := json.Marshal(reviewOf("Deployment", "u", `{"spec":{"template":{"metadata":{"annotations":{"dapr.io/enabled":"true","dapr.io/app-id":"x","dapr.io/sidecar-cpu-limit":"1e9999"}}}}}`))
	f.Add(bad)
	f.Add([]byte(`{"request":{"uid":"1","kind":{"kind":"Pod"},"operation":"CREATE","object":{"metadata":{"annotations":{"dapr.io/enabled":"1"}}}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var in admissionv1.AdmissionReview
		if json.Unmarshal(body, &in) != nil {
			return
		}
		out := Review(testConfig, &in)
		if out.Response == nil {
			t.Fatal("no response")
		}
		if in.Request != nil && out.Response.UID != in.Request.UID {
			t.Fatalf("UID %q, want %q", out.Response.UID, in.Request.UID)
		}
		if p := out.Response.Patch; p != nil {
			var ops []PatchOp
			if err := json.Unmarshal(p, &ops); err != nil {
				t.Fatalf("patch is not JSON: %v", err)
			}
		}
	})
}
