package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-run/tandem/internal/ca"
	"github.com/tandem-run/tandem/internal/identity"
	"github.com/tandem-run/tandem/internal/testutil/kubecluster"
	"github.com/tandem-run/tandem/internal/testutil/syncbuf"
)

// caServer runs the control plane's CA over HTTPS with a root from the
// cluster's Secret, and returns its address and a trust bundle file.
func caServer(t *testing.T, ctx context.Context, client kubernetes.Interface) (addr, bundleFile string) {
	t.Helper()
	root, bundle, err := ca.Root(ctx, client, "default", "tandem-ca")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(ca.New(ca.Config{TTL: time.Hour}, root, bundle, client))
	cert, err := root.ServingCert([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	bundleFile = filepath.Join(t.TempDir(), "trust-bundle.pem")
	if err := os.WriteFile(bundleFile, root.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv.URL, bundleFile
}

// podWithToken makes a service account and a pod of app id running as it in
// namespace, and returns a token bound to the pod with audience, in a file.
func podWithToken(t *testing.T, ctx context.Context, c *kubecluster.Cluster, namespace, sa, pod, appID, audience string) string {
	t.Helper()
	cs := c.Client.CoreV1()
	if _, err := cs.Namespaces().Get(ctx, namespace, metav1.GetOptions{}); err != nil {
		if _, err := cs.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.ServiceAccounts(namespace).Get(ctx, sa, metav1.GetOptions{}); err != nil {
		if _, err := cs.ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := cs.Pods(namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pod, Annotations: map[string]string{"dapr.io/app-id": appID}},
		Spec: corev1.PodSpec{ServiceAccountName: sa, AutomountServiceAccountToken: new(bool),
			Containers: []corev1.Container{{Name: "app", Image: "app:test"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	exp := int64(600)
	tr, err := cs.ServiceAccounts(namespace).CreateToken(ctx, sa, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		Audiences: []string{audience}, ExpirationSeconds: &exp,
		BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod, UID: p.UID},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// endPods marks pod finished (phase Succeeded) and pod deleting (deleted,
// kept by a finalizer): their bound tokens stay valid (a deleting pod's for
// 60 s after its deletion timestamp), so the CA's own checks are what
// refuses them.
func endPods(t *testing.T, ctx context.Context, client kubernetes.Interface, namespace, finished, deleting string) {
	t.Helper()
	pods := client.CoreV1().Pods(namespace)
	p, err := pods.Get(ctx, finished, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodSucceeded
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if p, err = pods.Get(ctx, deleting, metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	p.Finalizers = []string{"tandem.test/hold"}
	if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, deleting, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// The control plane's CA against a real API server: a pod's projected
// token gets the certificate of its own app id and namespace, and nothing
// else, and not once its pod has finished or is being deleted; each refusal
// says which check failed. Its root is made once, even by replicas starting
// together.
func TestKubernetesCA(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kubernetes control plane")
	}
	c := kubecluster.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var wg sync.WaitGroup
	roots := make([]string, 4)
	for i := range roots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _, err := ca.Root(ctx, c.Client, "default", "tandem-ca")
			if err != nil {
				t.Error(err)
				return
			}
			roots[i] = string(r.CertPEM())
		}()
	}
	wg.Wait()
	for _, r := range roots[1:] {
		if r != roots[0] {
			t.Fatal("replicas starting together made more than one root")
		}
	}

	addr, bundle := caServer(t, ctx, c.Client)
	orders := podWithToken(t, ctx, c, "shop", "orders-sa", "orders-1", "orders", ca.Audience)
	front := podWithToken(t, ctx, c, "shop", "front-sa", "front-1", "front", ca.Audience)
	elsewhere := podWithToken(t, ctx, c, "other", "orders-sa", "orders-1", "orders", ca.Audience)
	wrongAudience := podWithToken(t, ctx, c, "shop", "orders-sa", "orders-2", "orders", "https://kubernetes.default.svc.cluster.local")
	finished := podWithToken(t, ctx, c, "shop", "orders-sa", "orders-3", "orders", ca.Audience)
	deleting := podWithToken(t, ctx, c, "shop", "orders-sa", "orders-4", "orders", ca.Audience)
	endPods(t, ctx, c.Client, "shop", "orders-3", "orders-4")
	garbage := filepath.Join(t.TempDir(), "garbage")
	_ = os.WriteFile(garbage, []byte("not.a.token"), 0o600)

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	ask := func(token, namespace, appID string) ([][]byte, error) {
		issue, err := identity.RemoteIssuer(addr, token, bundle, identity.ID{TrustDomain: "public", Namespace: namespace, AppID: appID})
		if err != nil {
			t.Fatal(err)
		}
		return issue(ctx, csr)
	}
	chain, err := ask(orders, "shop", "orders")
	if err != nil {
		t.Fatalf("the pod's own identity: %v", err)
	}
	leaf, _ := x509.ParseCertificate(chain[0])
	if id, err := identity.FromCert(leaf); err != nil || id.String() != "spiffe://public/ns/shop/orders" {
		t.Errorf("issued %v %v", id, err)
	}
	for _, c := range []struct {
		name, token, ns, app string
		says                 []string
	}{
		{"another app id", front, "shop", "orders", []string{"pod shop/front-1 has app id \"front\"", "asks for \"orders\""}},
		{"another namespace", elsewhere, "shop", "orders", []string{"token is of namespace \"other\"", "asks for namespace \"shop\""}},
		{"another audience", wrongAudience, "shop", "orders", []string{"not valid for audience \"tandem-ca\""}},
		{"not a token", garbage, "shop", "orders", []string{"not valid"}},
		{"a finished pod", finished, "shop", "orders", []string{"pod shop/orders-3 has finished (phase Succeeded)"}},
		{"a pod being deleted", deleting, "shop", "orders", []string{"pod shop/orders-4 is being deleted"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ask(c.token, c.ns, c.app)
			if err == nil {
				t.Fatal("issued")
			}
			for _, s := range c.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("refusal %q does not say %q", err, s)
				}
			}
		})
	}
	// A token of another service account than the pod's: the API server
	// itself will not bind one to the pod, so the CA never sees it.
	exp := int64(600)
	p, _ := c.Client.CoreV1().Pods("shop").Get(ctx, "orders-1", metav1.GetOptions{})
	if _, err := c.Client.CoreV1().ServiceAccounts("shop").CreateToken(ctx, "front-sa", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		Audiences: []string{ca.Audience}, ExpirationSeconds: &exp,
		BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "orders-1", UID: p.UID},
	}}, metav1.CreateOptions{}); err == nil {
		t.Error("the API server bound a token of service account front-sa to a pod running as orders-sa; the CA's own check is then the only one")
	}

	t.Run("root rotation", func(t *testing.T) { caRootRotation(t, ctx, c, orders) })
}

// caRootRotation: the root's Secret goes through a rotation while the CA,
// its bundle keeper and its watch run, as docs/identity.md's steps say: the
// bundle ConfigMaps left by an earlier run of the control plane are found
// and kept; the old and the new root in trust-bundle.pem reach them; a
// Secret whose ca.crt is not in its bundle is refused with a reason and
// changes nothing; the new root in ca.crt signs the next certificate.
func caRootRotation(t *testing.T, ctx context.Context, c *kubecluster.Cluster, ordersToken string) {
	secrets := c.Client.CoreV1().Secrets("default")
	oldRoot, oldBundle, err := ca.Root(ctx, c.Client, "default", "tandem-ca")
	if err != nil {
		t.Fatal(err)
	}
	// A namespace with the ConfigMap of an earlier run, an old bundle in it.
	if _, err := c.Client.CoreV1().ConfigMaps("shop").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "tandem-trust-bundle", Labels: map[string]string{"app.kubernetes.io/part-of": "tandem"}},
		Data:       map[string]string{"ca.crt": "an earlier bundle"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	authority := ca.New(ca.Config{TTL: time.Hour}, oldRoot, oldBundle, c.Client)
	bundles := ca.NewBundles(c.Client, "tandem-trust-bundle", oldBundle, log)
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	applied := make(chan *identity.CA, 4)
	wg.Go(func() { _ = bundles.Run(wctx, time.Hour) })
	wg.Go(func() {
		ca.WatchRoot(wctx, c.Client, "default", "tandem-ca", 100*time.Millisecond, oldRoot, oldBundle, log, func(root *identity.CA, bundle []byte) {
			bundles.SetBundle(bundle)
			authority.SetRoot(root, bundle)
			applied <- root
		})
	})
	bundleIn := func(ns string, want []byte) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			cm, err := c.Client.CoreV1().ConfigMaps(ns).Get(ctx, "tandem-trust-bundle", metav1.GetOptions{})
			if err == nil && cm.Data["ca.crt"] == string(want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("ConfigMap %s/tandem-trust-bundle: %v %v, want the bundle %q", ns, cm.Data, err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	bundleIn("shop", oldBundle)

	newRoot, _ := identity.NewCA("tandem root rotated", 24*time.Hour)
	newKey, _ := newRoot.KeyPEM()
	oldKey, _ := oldRoot.KeyPEM()
	both := append(slices.Clip(oldRoot.CertPEM()), newRoot.CertPEM()...)
	update := func(crt, key, bundle []byte) {
		t.Helper()
		s, err := secrets.Get(ctx, "tandem-ca", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Data = map[string][]byte{"ca.crt": crt, "ca.key": key, "trust-bundle.pem": bundle}
		if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	issuer := func() string {
		t.Helper()
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		token, _ := os.ReadFile(ordersToken)
		resp, err := authority.Sign(ctx, ca.Request{CSR: csr, AppID: "orders", Namespace: "shop", Token: string(token)})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(func() []byte { b, _ := pem.Decode(resp.CertChain); return b.Bytes }())
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Issuer.CommonName
	}
	wait := func(what string) *identity.CA {
		t.Helper()
		select {
		case r := <-applied:
			return r
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: not applied after 30 s; log:\n%s", what, logs.String())
			return nil
		}
	}

	// 1. Both roots trusted, the old one signing.
	update(oldRoot.CertPEM(), oldKey, both)
	if r := wait("both roots in trust-bundle.pem"); r.Name() != oldRoot.Name() {
		t.Fatalf("signing with %q after the bundle changed, want the old root still", r.Name())
	}
	bundleIn("shop", both)
	if got := issuer(); got != oldRoot.Name() {
		t.Errorf("issued by %q, want the old root", got)
	}

	// A new root not in the bundle would sign certificates no sidecar
	// trusts: refused, the old root signs on.
	update(newRoot.CertPEM(), newKey, oldRoot.CertPEM())
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "does not hold the root in ca.crt") {
		if time.Now().After(deadline) {
			t.Fatalf("a ca.crt outside its bundle: no error logged:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case r := <-applied:
		t.Fatalf("a ca.crt outside its bundle was applied (%s)", r.Name())
	default:
	}
	if got := issuer(); got != oldRoot.Name() {
		t.Errorf("issued by %q after a refused change, want the old root", got)
	}

	// 2. The new root signs; 3. the old root leaves the bundle.
	update(newRoot.CertPEM(), newKey, both)
	if r := wait("the new root in ca.crt"); r.Name() != newRoot.Name() {
		t.Fatalf("signing with %q, want the new root", r.Name())
	}
	if got := issuer(); got != newRoot.Name() {
		t.Errorf("issued by %q, want the new root", got)
	}
	update(newRoot.CertPEM(), newKey, newRoot.CertPEM())
	wait("the old root out of trust-bundle.pem")
	bundleIn("shop", newRoot.CertPEM())
}
