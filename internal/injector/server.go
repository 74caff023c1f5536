package injector

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
)

// maxReview bounds an AdmissionReview body; the API server's own limit on
// objects is 3 MiB.
const maxReview = 4 << 20

// Handler serves the webhook: POST /mutate answers AdmissionReviews with
// Review; GET /healthz and /readyz answer 200. It never blocks on anything
// but the request.
//
// injected, when given, are told the namespace of every pod the webhook
// injects (the trust bundle's ConfigMap follows the pods); Review itself
// stays a function of the request.
func Handler(cfg Config, log *slog.Logger, injected ...func(namespace string)) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /mutate", func(w http.ResponseWriter, r *http.Request) { serveMutate(cfg, log, w, r, injected) })
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }
	mux.HandleFunc("GET /healthz", ok)
	mux.HandleFunc("GET /readyz", ok)
	return mux
}

func serveMutate(cfg Config, log *slog.Logger, w http.ResponseWriter, r *http.Request, injected []func(string)) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		http.Error(w, fmt.Sprintf("content type %q: an AdmissionReview must be sent as application/json", r.Header.Get("Content-Type")), http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReview))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, fmt.Sprintf("the AdmissionReview is over %d bytes", maxReview), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the AdmissionReview: "+err.Error(), http.StatusBadRequest)
		return
	}
	var in admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &in); err != nil {
		http.Error(w, "the body is not an AdmissionReview: "+err.Error(), http.StatusBadRequest)
		return
	}
	if in.APIVersion != "admission.k8s.io/v1" || in.Kind != "AdmissionReview" {
		http.Error(w, fmt.Sprintf("%s %s is not supported; send admission.k8s.io/v1 AdmissionReview (admissionReviewVersions: [\"v1\"])", in.APIVersion, in.Kind), http.StatusBadRequest)
		return
	}
	out := Review(cfg, &in)
	if req := in.Request; req != nil {
		res := out.Response
		if res.Patch != nil && req.Kind.Kind == "Pod" {
			for _, f := range injected {
				f(req.Namespace)
			}
		}
		attrs := []any{"uid", req.UID, "kind", req.Kind.Kind, "namespace", req.Namespace, "name", req.Name, "user", req.UserInfo.Username, "allowed", res.Allowed, "patched", res.Patch != nil}
		if res.Result != nil {
			attrs = append(attrs, "reason", res.Result.Message)
		}
		if !res.Allowed {
			log.Info("admission refused", attrs...)
		} else {
			log.Debug("admission", attrs...)
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
