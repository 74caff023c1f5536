// Package ca is the control plane's certificate authority for sidecars in
// Kubernetes: it issues a sidecar the certificate of the SPIFFE ID
// spiffe://<trust-domain>/ns/<namespace>/<app-id> only when the pod asking
// for it has that app id.
//
// A request carries a certificate request, the app id and namespace asked
// for, and a projected service-account token whose audience is the CA. The
// CA checks the token with a TokenReview (authentication.k8s.io), which names
// the service account and the pod the token is bound to; the namespace asked
// for must be the token's, the pod must run as that service account (and be
// the same pod, by UID), and its dapr.io/app-id must be the app id asked for.
// The answer must name the CA's audience in status.audiences (an API server
// whose authenticator ignores spec.audiences would otherwise pass a token
// meant for the API server itself), and the pod must be neither finished
// nor being deleted. The certificate request must be signed by its key, of
// a type the CA accepts, and name no other SPIFFE ID than the one asked for.
// Each refusal says which of these failed.
//
// The root lives in a Secret of the control plane's namespace (root.go).
package ca

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-run/tandem/internal/identity"
)

// Audience is the audience of the tokens sidecars send.
const Audience = "tandem-ca"

// Config is the authority's configuration.
type Config struct {
	TrustDomain string        // default identity.DefaultTrustDomain
	TTL         time.Duration // of the certificates issued; default 24h
	Audience    string        // default Audience
	Logger      *slog.Logger
}

// Authority issues sidecar certificates.
type Authority struct {
	cfg  Config
	root atomic.Pointer[root]
	kube kubernetes.Interface
}

// root is the CA that signs and the bundle sidecars trust.
type root struct {
	ca     *identity.CA
	bundle []byte
}

// New returns an authority signing with ca, whose sidecars trust bundle.
func New(cfg Config, ca *identity.CA, bundle []byte, kube kubernetes.Interface) *Authority {
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = identity.DefaultTrustDomain
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 24 * time.Hour
	}
	if cfg.Audience == "" {
		cfg.Audience = Audience
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Authority{cfg: cfg, kube: kube}
	a.SetRoot(ca, bundle)
	return a
}

// SetRoot makes ca sign from the next request on, and bundle the trust
// bundle given out (the CA's certificate when empty).
func (a *Authority) SetRoot(ca *identity.CA, bundle []byte) {
	if len(bundle) == 0 {
		bundle = ca.CertPEM()
	}
	a.root.Store(&root{ca: ca, bundle: bundle})
}

// Request is what a sidecar sends.
type Request struct {
	// CSR is the certificate request, PEM or base64 DER (JSON []byte).
	CSR       []byte `json:"csr"`
	AppID     string `json:"appId"`
	Namespace string `json:"namespace"`
	// Token is a projected service-account token with the CA's audience.
	Token string `json:"token"`
}

// Response is what the CA answers: the certificate chain, leaf first, and
// the trust bundle, both PEM.
type Response struct {
	CertChain   []byte `json:"certChain"`
	TrustBundle []byte `json:"trustBundle"`
}

// Refused is a request the CA turns down, saying why.
type Refused struct {
	Status int
	Msg    string
}

func (e *Refused) Error() string { return e.Msg }

func refused(status int, format string, args ...any) *Refused {
	return &Refused{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// Sign checks who is asking and issues the certificate.
func (a *Authority) Sign(ctx context.Context, r Request) (*Response, error) {
	id := identity.ID{TrustDomain: a.cfg.TrustDomain, Namespace: r.Namespace, AppID: r.AppID}
	if err := id.Validate(); err != nil {
		return nil, refused(http.StatusBadRequest, "%v", err)
	}
	csr := r.CSR
	if b, _ := pem.Decode(csr); b != nil {
		csr = b.Bytes
	}
	if err := checkCSR(csr, id); err != nil {
		return nil, refused(http.StatusBadRequest, "%v", err)
	}
	if r.Token == "" {
		return nil, refused(http.StatusUnauthorized, "no token: send the pod's projected service-account token with audience %q", a.cfg.Audience)
	}
	review, err := a.kube.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: r.Token, Audiences: []string{a.cfg.Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("reviewing the token: %w", err)
	}
	st := review.Status
	if !st.Authenticated {
		return nil, refused(http.StatusUnauthorized, "the token is not valid for audience %q: %s", a.cfg.Audience, st.Error)
	}
	// A client that sets spec.audiences must find one of them in the
	// answer: an empty status.audiences means the token was checked against
	// the API server's own audience, not the CA's.
	if len(st.Audiences) == 0 {
		return nil, refused(http.StatusUnauthorized, "the API server authenticated the token without naming its audience (status.audiences is empty), so not for the CA's audience %q: its authenticator does not check audiences; the CA accepts only a token it vouches for with audience %q",
			a.cfg.Audience, a.cfg.Audience)
	}
	if !slices.Contains(st.Audiences, a.cfg.Audience) {
		return nil, refused(http.StatusUnauthorized, "the API server authenticated the token for audiences %q, not for the CA's audience %q: send the pod's projected service-account token with audience %q",
			st.Audiences, a.cfg.Audience, a.cfg.Audience)
	}
	ns, sa, ok := serviceAccount(st.User.Username)
	if !ok {
		return nil, refused(http.StatusForbidden, "the token is %q's, not a service account's", st.User.Username)
	}
	if ns != r.Namespace {
		return nil, refused(http.StatusForbidden, "the token is of namespace %q, and the request asks for namespace %q", ns, r.Namespace)
	}
	podName, podUID := first(st.User.Extra["authentication.kubernetes.io/pod-name"]), first(st.User.Extra["authentication.kubernetes.io/pod-uid"])
	if podName == "" {
		return nil, refused(http.StatusForbidden, "the token is not bound to a pod: mount a projected service-account token (the injector does)")
	}
	pod, err := a.kube.CoreV1().Pods(ns).Get(ctx, podName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, refused(http.StatusForbidden, "pod %s/%s of the token does not exist", ns, podName)
	}
	if err != nil {
		return nil, fmt.Errorf("reading pod %s/%s: %w", ns, podName, err)
	}
	if podUID != "" && string(pod.UID) != podUID {
		return nil, refused(http.StatusForbidden, "the token is bound to an earlier pod named %s/%s", ns, podName)
	}
	if pod.DeletionTimestamp != nil {
		return nil, refused(http.StatusForbidden, "pod %s/%s is being deleted (since %s): a pod on its way out gets no new certificate",
			ns, podName, pod.DeletionTimestamp.UTC().Format(time.RFC3339))
	}
	if ph := pod.Status.Phase; ph == corev1.PodSucceeded || ph == corev1.PodFailed {
		return nil, refused(http.StatusForbidden, "pod %s/%s has finished (phase %s): a finished pod gets no certificate", ns, podName, ph)
	}
	if podSA := cmpOr(pod.Spec.ServiceAccountName, "default"); podSA != sa {
		return nil, refused(http.StatusForbidden, "the token is of service account %q, and pod %s/%s runs as %q", sa, ns, podName, podSA)
	}
	if got := pod.Annotations["dapr.io/app-id"]; got != r.AppID {
		return nil, refused(http.StatusForbidden, "pod %s/%s has app id %q (dapr.io/app-id), and the request asks for %q", ns, podName, got, r.AppID)
	}
	rt := a.root.Load()
	chain, err := rt.ca.Sign(csr, id, a.cfg.TTL)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate of %s: %w", id, err)
	}
	var out []byte
	for _, der := range chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	a.cfg.Logger.Info("certificate issued", "id", id.String(), "pod", podName, "root", rt.ca.Name())
	return &Response{CertChain: out, TrustBundle: rt.bundle}, nil
}

// ServeHTTP serves POST /v1/certificates: a JSON Request in, a JSON Response
// out; a refusal is its status with {"error": "..."}.
func (a *Authority) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/certificates" {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "the CA serves POST /v1/certificates"})
		return
	}
	var req Request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "the request is not valid JSON of {csr, appId, namespace, token}: " + err.Error()})
		return
	}
	resp, err := a.Sign(r.Context(), req)
	var rf *Refused
	switch {
	case errors.As(err, &rf):
		a.cfg.Logger.Warn("certificate refused", "app_id", req.AppID, "namespace", req.Namespace, "reason", rf.Msg)
		writeJSON(w, rf.Status, map[string]string{"error": rf.Msg})
	case err != nil:
		a.cfg.Logger.Error("certificate not issued", "app_id", req.AppID, "namespace", req.Namespace, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, resp)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func serviceAccount(user string) (ns, name string, ok bool) {
	rest, ok := strings.CutPrefix(user, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	ns, name, ok = strings.Cut(rest, ":")
	return ns, name, ok && ns != "" && name != ""
}

func first(v authnv1.ExtraValue) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
