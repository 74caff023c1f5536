package ca_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tandem-run/tandem/internal/ca"
	"github.com/tandem-run/tandem/internal/identity"
)

// The fake clientset stands in for the API server: a TokenReview needs a
// real authenticator, which tests/e2e runs (TestKubernetesCA). Here the
// answer to the review is whatever a case says the API server answers.

const (
	token    = "projected-token-of-orders-1"
	podUID   = "6f1c2d9e-0000-4000-8000-000000000001"
	ttl      = time.Hour
	ordersID = "spiffe://public/ns/shop/orders"
)

// request is what the sidecar of app orders in pod shop/orders-1 sends, its
// key and certificate request one of key's kind.
type request struct {
	ca.Request
	key crypto.Signer
}

// fixture is one exchange: the request, the API server's answer to its
// token's review, and the pod (nil: none).
type fixture struct {
	req       request
	review    authnv1.TokenReviewStatus
	pod       *corev1.Pod
	reviewErr error // the TokenReview's create fails
	podErr    error // reading the pod fails
}

func newFixture(t *testing.T) *fixture {
	return &fixture{
		req: newRequest(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, ordersID)}}),
		review: authnv1.TokenReviewStatus{
			Authenticated: true,
			Audiences:     []string{ca.Audience},
			User: authnv1.UserInfo{
				Username: "system:serviceaccount:shop:orders-sa",
				Extra: map[string]authnv1.ExtraValue{
					"authentication.kubernetes.io/pod-name": {"orders-1"},
					"authentication.kubernetes.io/pod-uid":  {podUID},
				},
			},
		},
		pod: &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "orders-1", Namespace: "shop", UID: podUID,
				Annotations: map[string]string{"dapr.io/app-id": "orders"}},
			Spec:   corev1.PodSpec{ServiceAccountName: "orders-sa"},
			Status: corev1.PodStatus{Phase: corev1.PodRunning},
		},
	}
}

// authority is a CA signing with root, in front of a fake API server that
// answers as f says. The review's request must carry the token and the
// CA's audience, else the review fails.
func (f *fixture) authority(t *testing.T, root *identity.CA) *ca.Authority {
	t.Helper()
	var objs []runtime.Object
	if f.pod != nil {
		objs = append(objs, f.pod)
	}
	kube := fake.NewClientset(objs...)
	kube.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		tr := action.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
		if !slices.Equal(tr.Spec.Audiences, []string{ca.Audience}) {
			t.Errorf("the TokenReview asks for audiences %q, want [%q]", tr.Spec.Audiences, ca.Audience)
		}
		if f.reviewErr != nil {
			return true, nil, f.reviewErr
		}
		out := tr.DeepCopy()
		out.Status = f.review
		if tr.Spec.Token != token {
			out.Status = authnv1.TokenReviewStatus{Error: "invalid bearer token"}
		}
		return true, out, nil
	})
	if f.podErr != nil {
		kube.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, f.podErr
		})
	}
	return ca.New(ca.Config{TTL: ttl}, root, nil, kube)
}

// Every check the CA makes, each broken alone: the request is refused with
// the status and the reason a sidecar's log shows.
func TestSignRefuses(t *testing.T) {
	root := newRoot(t)
	for _, c := range []struct {
		name   string
		edit   func(t *testing.T, f *fixture)
		status int
		says   string
	}{
		{"app id not valid", func(t *testing.T, f *fixture) { f.req.AppID = "Orders/1" },
			http.StatusBadRequest, `app id "Orders/1"`},
		{"namespace not valid", func(t *testing.T, f *fixture) { f.req.Namespace = "" },
			http.StatusBadRequest, `namespace ""`},

		{"no certificate request", func(t *testing.T, f *fixture) { f.req.CSR = nil },
			http.StatusBadRequest, "no certificate request: send csr"},
		{"certificate request malformed", func(t *testing.T, f *fixture) { f.req.CSR = []byte("not a request") },
			http.StatusBadRequest, "the certificate request (csr) is not a PKCS #10 request"},
		{"certificate request PEM of no request", func(t *testing.T, f *fixture) {
			f.req.CSR = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("junk")})
		}, http.StatusBadRequest, "the certificate request (csr) is not a PKCS #10 request"},
		{"certificate request signed by another key", func(t *testing.T, f *fixture) {
			f.req.CSR[len(f.req.CSR)-1] ^= 0xff // the last byte of the signature
		}, http.StatusBadRequest, "the certificate request's signature does not verify"},
		{"certificate request for another app id", func(t *testing.T, f *fixture) {
			f.req = newRequest(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, "spiffe://public/ns/shop/front")}})
		}, http.StatusBadRequest, `the certificate request names "spiffe://public/ns/shop/front", and the request asks for "spiffe://public/ns/shop/orders"`},
		{"certificate request of another trust domain", func(t *testing.T, f *fixture) {
			f.req = newRequest(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, "spiffe://example.org/ns/shop/orders")}})
		}, http.StatusBadRequest, `the certificate request names "spiffe://example.org/ns/shop/orders"`},
		{"certificate request with a second URI", func(t *testing.T, f *fixture) {
			f.req = newRequest(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, ordersID), mustURL(t, "https://orders.example")}})
		}, http.StatusBadRequest, `the certificate request names "https://orders.example"`},
		{"RSA key of 1024 bits", func(t *testing.T, f *fixture) {
			k, err := rsa.GenerateKey(rand.Reader, 1024)
			if err != nil {
				t.Fatal(err)
			}
			f.req = newRequest(t, k, &x509.CertificateRequest{})
		}, http.StatusBadRequest, "the certificate request's key is RSA of 1024 bits (accepted: ECDSA on P-256, P-384 or P-521, Ed25519, or RSA of 2048 bits or more)"},
		{"ECDSA key on P-224", func(t *testing.T, f *fixture) {
			k, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			f.req = newRequest(t, k, &x509.CertificateRequest{})
		}, http.StatusBadRequest, "the certificate request's key is ECDSA on curve P-224 (accepted:"},

		{"no token", func(t *testing.T, f *fixture) { f.req.Token = "" },
			http.StatusUnauthorized, `no token: send the pod's projected service-account token with audience "tandem-ca"`},
		{"token not authenticated", func(t *testing.T, f *fixture) {
			f.review = authnv1.TokenReviewStatus{Error: "token audiences [\"https://kubernetes.default.svc\"] is invalid for the target audiences [\"tandem-ca\"]"}
		}, http.StatusUnauthorized, `the token is not valid for audience "tandem-ca": token audiences`},
		{"answer names no audience", func(t *testing.T, f *fixture) { f.review.Audiences = nil },
			http.StatusUnauthorized, `the API server authenticated the token without naming its audience (status.audiences is empty), so not for the CA's audience "tandem-ca"`},
		{"answer names other audiences", func(t *testing.T, f *fixture) {
			f.review.Audiences = []string{"https://kubernetes.default.svc", "vault"}
		}, http.StatusUnauthorized, `the API server authenticated the token for audiences ["https://kubernetes.default.svc" "vault"], not for the CA's audience "tandem-ca"`},
		{"token of a user", func(t *testing.T, f *fixture) { f.review.User.Username = "alice" },
			http.StatusForbidden, `the token is "alice"'s, not a service account's`},
		{"token of another namespace", func(t *testing.T, f *fixture) {
			f.review.User.Username = "system:serviceaccount:other:orders-sa"
		}, http.StatusForbidden, `the token is of namespace "other", and the request asks for namespace "shop"`},
		{"token bound to no pod", func(t *testing.T, f *fixture) { f.review.User.Extra = nil },
			http.StatusForbidden, "the token is not bound to a pod"},

		{"pod not found", func(t *testing.T, f *fixture) { f.pod = nil },
			http.StatusForbidden, "pod shop/orders-1 of the token does not exist"},
		{"pod of the same name made again", func(t *testing.T, f *fixture) { f.pod.UID = "6f1c2d9e-0000-4000-8000-000000000002" },
			http.StatusForbidden, "the token is bound to an earlier pod named shop/orders-1"},
		{"pod being deleted", func(t *testing.T, f *fixture) {
			f.pod.DeletionTimestamp = &metav1.Time{Time: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
			f.pod.Finalizers = []string{"example.com/hold"}
		}, http.StatusForbidden, "pod shop/orders-1 is being deleted (since 2026-12-01T10:00:00Z): a pod on its way out gets no new certificate"},
		{"pod succeeded", func(t *testing.T, f *fixture) { f.pod.Status.Phase = corev1.PodSucceeded },
			http.StatusForbidden, "pod shop/orders-1 has finished (phase Succeeded): a finished pod gets no certificate"},
		{"pod failed", func(t *testing.T, f *fixture) { f.pod.Status.Phase = corev1.PodFailed },
			http.StatusForbidden, "pod shop/orders-1 has finished (phase Failed): a finished pod gets no certificate"},
		{"pod runs as another service account", func(t *testing.T, f *fixture) { f.pod.Spec.ServiceAccountName = "front-sa" },
			http.StatusForbidden, `the token is of service account "orders-sa", and pod shop/orders-1 runs as "front-sa"`},
		{"pod runs as the default service account", func(t *testing.T, f *fixture) { f.pod.Spec.ServiceAccountName = "" },
			http.StatusForbidden, `the token is of service account "orders-sa", and pod shop/orders-1 runs as "default"`},
		{"pod of another app id", func(t *testing.T, f *fixture) { f.pod.Annotations["dapr.io/app-id"] = "front" },
			http.StatusForbidden, `pod shop/orders-1 has app id "front" (dapr.io/app-id), and the request asks for "orders"`},
		{"pod of no app id", func(t *testing.T, f *fixture) { f.pod.Annotations = nil },
			http.StatusForbidden, `pod shop/orders-1 has app id "" (dapr.io/app-id), and the request asks for "orders"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			c.edit(t, f)
			resp, err := f.authority(t, root).Sign(context.Background(), f.req.Request)
			var rf *ca.Refused
			if !errors.As(err, &rf) {
				t.Fatalf("Sign = %v, %v; want a refusal saying %q", resp, err, c.says)
			}
			if rf.Status != c.status || !strings.Contains(rf.Msg, c.says) {
				t.Errorf("refused with %d %q, want %d saying %q", rf.Status, rf.Msg, c.status, c.says)
			}
		})
	}
}

// The API server failing is not a refusal: the sidecar is told the CA
// could not decide, and retries.
func TestSignAPIServerFails(t *testing.T) {
	root := newRoot(t)
	for _, c := range []struct {
		name string
		edit func(f *fixture)
		says string
	}{
		{"token review", func(f *fixture) { f.reviewErr = apierrors.NewServiceUnavailable("etcd is down") },
			"reviewing the token: etcd is down"},
		{"pod read", func(f *fixture) {
			f.podErr = apierrors.NewForbidden(corev1.Resource("pods"), "orders-1", errors.New("RBAC"))
		},
			"reading pod shop/orders-1: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			c.edit(f)
			_, err := f.authority(t, root).Sign(context.Background(), f.req.Request)
			var rf *ca.Refused
			if err == nil || errors.As(err, &rf) || !strings.Contains(err.Error(), c.says) {
				t.Errorf("Sign: %v, want an error (not a refusal) saying %q", err, c.says)
			}
		})
	}
}

// A request that passes every check gets the certificate of its pod's
// SPIFFE ID, for the configured lifetime, for TLS servers and clients, to
// its own key, chaining to the trust bundle it is given.
func TestSignIssues(t *testing.T) {
	root := newRoot(t)
	for _, c := range []struct {
		name string
		edit func(t *testing.T, f *fixture)
	}{
		{"the sidecar's request (ECDSA P-256, its SPIFFE ID, DER)", func(*testing.T, *fixture) {}},
		{"request in PEM", func(t *testing.T, f *fixture) {
			f.req.CSR = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: f.req.CSR})
		}},
		{"request naming no SPIFFE ID", func(t *testing.T, f *fixture) {
			f.req = newRequest(t, p256(t), &x509.CertificateRequest{})
		}},
		{"ECDSA P-384 key", func(t *testing.T, f *fixture) {
			k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			f.req = newRequest(t, k, &x509.CertificateRequest{})
		}},
		{"Ed25519 key", func(t *testing.T, f *fixture) {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			f.req = newRequest(t, k, &x509.CertificateRequest{})
		}},
		{"RSA key of 2048 bits", func(t *testing.T, f *fixture) {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				t.Fatal(err)
			}
			f.req = newRequest(t, k, &x509.CertificateRequest{})
		}},
		{"pod pending (its app starts after a native sidecar)", func(t *testing.T, f *fixture) { f.pod.Status.Phase = corev1.PodPending }},
		{"pod and token of the default service account", func(t *testing.T, f *fixture) {
			f.pod.Spec.ServiceAccountName = ""
			f.review.User.Username = "system:serviceaccount:shop:default"
		}},
		{"answer naming the CA's audience among others", func(t *testing.T, f *fixture) {
			f.review.Audiences = []string{"vault", ca.Audience}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			c.edit(t, f)
			before := time.Now()
			resp, err := f.authority(t, root).Sign(context.Background(), f.req.Request)
			after := time.Now()
			if err != nil {
				t.Fatal(err)
			}
			checkIssued(t, resp, root, f.req.key, before, after)
		})
	}
}

// checkIssued checks the answer to the orders sidecar's request, made
// between before and after.
func checkIssued(t *testing.T, resp *ca.Response, root *identity.CA, key crypto.Signer, before, after time.Time) {
	t.Helper()
	if !bytes.Equal(resp.TrustBundle, root.CertPEM()) {
		t.Errorf("trust bundle %q, want the root's certificate", resp.TrustBundle)
	}
	var chain []*x509.Certificate
	for rest := resp.CertChain; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	if len(chain) != 1 {
		t.Fatalf("chain of %d certificates, want the leaf alone", len(chain))
	}
	leaf := chain[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != ordersID {
		t.Errorf("URI SANs %v, want [%s]", leaf.URIs, ordersID)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("other SANs: %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		t.Error("the certificate is not of the request's key")
	}
	// Certificates carry whole seconds.
	if lo, hi := before.Add(ttl).Truncate(time.Second), after.Add(ttl); leaf.NotAfter.Before(lo) || leaf.NotAfter.After(hi) {
		t.Errorf("not after %v, want %v from the request (between %v and %v)", leaf.NotAfter, ttl, lo, hi)
	}
	if leaf.NotBefore.After(before) {
		t.Errorf("not before %v, after the request at %v", leaf.NotBefore, before)
	}
	if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
		t.Error("the sidecar's certificate can sign certificates")
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		t.Errorf("key usage %b has no digital signature", leaf.KeyUsage)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("extended key usages %v, want server and client authentication", leaf.ExtKeyUsage)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(resp.TrustBundle) {
		t.Fatal("the trust bundle holds no certificate")
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("the certificate does not chain to the trust bundle for %v: %v", usage, err)
		}
	}
	if id, err := identity.FromCert(leaf); err != nil || id.String() != ordersID {
		t.Errorf("the sidecar reads identity %v (%v), want %s", id, err, ordersID)
	}
}

// Over HTTP a refusal is its status and {"error": reason}; the API server
// failing is a 503; a request that is not the CA's JSON is a 400 naming
// the fields.
func TestServeHTTP(t *testing.T) {
	root := newRoot(t)
	for _, c := range []struct {
		name, method, path string
		body               func(f *fixture) string
		status             int
		says               string
	}{
		{"issued", http.MethodPost, "/v1/certificates", nil, http.StatusOK, ""},
		{"refused", http.MethodPost, "/v1/certificates", func(f *fixture) string {
			f.pod.Status.Phase = corev1.PodSucceeded
			return ""
		}, http.StatusForbidden, "pod shop/orders-1 has finished (phase Succeeded)"},
		{"API server fails", http.MethodPost, "/v1/certificates", func(f *fixture) string {
			f.reviewErr = apierrors.NewServiceUnavailable("etcd is down")
			return ""
		}, http.StatusServiceUnavailable, "reviewing the token: etcd is down"},
		{"not JSON", http.MethodPost, "/v1/certificates", func(*fixture) string { return "csr=x" },
			http.StatusBadRequest, "the request is not valid JSON of {csr, appId, namespace, token}"},
		{"unknown field", http.MethodPost, "/v1/certificates", func(*fixture) string { return `{"pod":"orders-1"}` },
			http.StatusBadRequest, `unknown field "pod"`},
		{"another path", http.MethodPost, "/v1/certificate", nil, http.StatusNotFound, "the CA serves POST /v1/certificates"},
		{"GET", http.MethodGet, "/v1/certificates", nil, http.StatusNotFound, "the CA serves POST /v1/certificates"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			body := ""
			if c.body != nil {
				body = c.body(f)
			}
			if body == "" {
				b, _ := json.Marshal(f.req.Request)
				body = string(b)
			}
			rec := httptest.NewRecorder()
			f.authority(t, root).ServeHTTP(rec, httptest.NewRequest(c.method, c.path, strings.NewReader(body)))
			if rec.Code != c.status {
				t.Errorf("status %d, want %d; body %s", rec.Code, c.status, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if c.status == http.StatusOK {
				var resp ca.Response
				if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || len(resp.CertChain) == 0 {
					t.Errorf("answer %s: %v", rec.Body, err)
				}
				return
			}
			var e struct{ Error string }
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !strings.Contains(e.Error, c.says) {
				t.Errorf("answer %s (%v), want an error saying %q", rec.Body, err, c.says)
			}
		})
	}
}

func newRoot(t *testing.T) *identity.CA {
	t.Helper()
	root, err := identity.NewCA("tandem root test", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// newRequest is the orders sidecar's request with a certificate request
// from tmpl signed by key, in DER as the sidecar sends it.
func newRequest(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) request {
	t.Helper()
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return request{Request: ca.Request{CSR: csr, AppID: "orders", Namespace: "shop", Token: token}, key: key}
}

func p256(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
