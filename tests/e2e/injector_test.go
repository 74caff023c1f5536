package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/tandem-run/tandem/internal/identity"
	"github.com/tandem-run/tandem/internal/testutil/kubecluster"
	"github.com/tandem-run/tandem/internal/testutil/proc"
)

// applier creates the objects of YAML files, as kubectl apply would for new
// objects, resolving kinds (CRDs included) through discovery.
type applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(t *testing.T, cfg *rest.Config) *applier {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{dyn: dynamic.NewForConfigOrDie(cfg), mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
}

// objects reads the documents of YAML files.
func objects(t *testing.T, files ...string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for doc := range bytes.SplitSeq(b, []byte("\n---\n")) {
			var m map[string]any
			if err := yaml.Unmarshal(doc, &m); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(m) > 0 {
				out = append(out, &unstructured.Unstructured{Object: m})
			}
		}
	}
	return out
}

func (a *applier) create(ctx context.Context, ns string, o *unstructured.Unstructured) error {
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		a.mapper.Reset() // a CRD created just now
		if m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			return err
		}
	}
	var r dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		r = a.dyn.Resource(m.Resource).Namespace(ns)
	}
	_, err = r.Create(ctx, o, metav1.CreateOptions{})
	return err
}

// warnings collects the API server's warnings to this client.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

func (w *warnings) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.msgs, "\n")
}

// startInjector runs the injector binary against the cluster and registers
// its webhook as the chart does, with the caBundle left for the injector to
// fill in.
//
// It also serves the sidecars' certificate authority (--mtls), whose
// https address it returns.
func startInjector(t *testing.T, c *kubecluster.Cluster) (caAddr string) {
	t.Helper()
	pt := proc.For(t)
	port, caPort := pt.FreePort(), pt.FreePort()
	pt.Start("injector", injectorBin, nil,
		"--kubeconfig", c.Kubeconfig,
		"--listen-address", "127.0.0.1:"+strconv.Itoa(port),
		"--tls-hosts", "127.0.0.1",
		"--sidecar-image", "tandem/sidecar:e2e",
		"--webhook-config-name", "tandem-injector",
		"--log-level", "debug",
		"--mtls", "--namespace", "default", "--ca-listen-address", "127.0.0.1:"+strconv.Itoa(caPort),
	)
	pt.WaitTCP("127.0.0.1:"+strconv.Itoa(port), listenWait)
	pt.WaitTCP("127.0.0.1:"+strconv.Itoa(caPort), listenWait)
	caAddr = "https://127.0.0.1:" + strconv.Itoa(caPort)
	url := "https://127.0.0.1:" + strconv.Itoa(port) + "/mutate"
	fail, none, ifNeeded, timeout := admissionregv1.Fail, admissionregv1.SideEffectClassNone, admissionregv1.IfNeededReinvocationPolicy, int32(5)
	scope := admissionregv1.NamespacedScope
	wc := &admissionregv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "tandem-injector"},
		Webhooks: []admissionregv1.MutatingWebhook{{
			Name:                    "sidecar-injector.tandem.dev",
			ClientConfig:            admissionregv1.WebhookClientConfig{URL: &url},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &none,
			FailurePolicy:           &fail,
			ReinvocationPolicy:      &ifNeeded,
			TimeoutSeconds:          &timeout,
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system"},
			}}},
			Rules: []admissionregv1.RuleWithOperations{
				{Operations: []admissionregv1.OperationType{admissionregv1.Create}, Rule: admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope}},
				{Operations: []admissionregv1.OperationType{admissionregv1.Create, admissionregv1.Update}, Rule: admissionregv1.Rule{
					APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments", "statefulsets", "daemonsets", "replicasets"}, Scope: &scope}},
			},
		}},
	}
	ctx := ctxT(t)
	api := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := api.Create(ctx, wc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		got, err := api.Get(ctx, wc.Name, metav1.GetOptions{})
		if err == nil && len(got.Webhooks[0].ClientConfig.CABundle) > 0 {
			return caAddr
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the injector did not set the webhook's caBundle")
	return ""
}

func TestInjectorAgainstARealAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kubernetes control plane")
	}
	c := kubecluster.Start(t)
	caAddr := startInjector(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	warn := &warnings{}
	cfg := rest.CopyConfig(c.Config)
	cfg.WarningHandler = warn
	client := kubernetes.NewForConfigOrDie(cfg)
	ap := newApplier(t, cfg)

	// The CRDs, then the calculator's manifests, unchanged.
	for _, o := range objects(t, "../../charts/tandem/crds/components.yaml", "../../charts/tandem/crds/configurations.yaml") {
		if err := ap.create(ctx, "", o); err != nil {
			t.Fatal(err)
		}
	}
	deploy, _ := filepath.Glob("../../samples/calculator/deploy/*.yaml")
	for _, o := range objects(t, deploy...) {
		if err := retry(ctx, func() error { return ap.create(ctx, "default", o) }); err != nil {
			t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}

	apps := map[string]string{"addapp": "6000", "subtractapp": "6000", "multiplyapp": "6000", "divideapp": "6000", "calculator-front-end": "8080"}
	for id, port := range apps {
		pod := waitPod(t, ctx, client, id)
		var sidecar, app *corev1.Container
		for i := range pod.Spec.Containers {
			if pod.Spec.Containers[i].Name == "daprd" {
				sidecar = &pod.Spec.Containers[i]
			} else {
				app = &pod.Spec.Containers[i]
			}
		}
		// A native sidecar (the default on this 1.37 control plane) is the
		// first init container.
		if ic := pod.Spec.InitContainers; len(ic) > 0 && ic[0].Name == "daprd" {
			sidecar = &ic[0]
		}
		if sidecar == nil {
			t.Errorf("pod %s of %s has no sidecar: %v", pod.Name, id, pod.Spec.Containers)
			continue
		}
		args := strings.Join(sidecar.Args, " ")
		for _, want := range []string{"--mode kubernetes", "--app-id " + id, "--app-port " + port, "--config appconfig"} {
			if !strings.Contains(args, want) {
				t.Errorf("%s sidecar args %q lack %q", id, args, want)
			}
		}
		if sidecar.Image != "tandem/sidecar:e2e" || sidecar.ReadinessProbe == nil || sidecar.SecurityContext == nil || !*sidecar.SecurityContext.ReadOnlyRootFilesystem {
			t.Errorf("%s sidecar %+v", id, sidecar)
		}
		if !slices.ContainsFunc(app.Env, func(e corev1.EnvVar) bool { return e.Name == "DAPR_HTTP_PORT" && e.Value == "3500" }) {
			t.Errorf("%s app env %v", id, app.Env)
		}
		// Mutual TLS: the CA's flags, the projected token and the bundle.
		for _, want := range []string{"--enable-mtls", "--sentry-address https://tandem-injector.default.svc:", "--trust-anchors-file /var/run/secrets/tandem.io/trust/ca.crt"} {
			if !strings.Contains(args, want) {
				t.Errorf("%s sidecar args %q lack %q", id, args, want)
			}
		}
		if !slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool {
			return v.Projected != nil && len(v.Projected.Sources) == 1 && v.Projected.Sources[0].ServiceAccountToken != nil &&
				v.Projected.Sources[0].ServiceAccountToken.Audience == "tandem-ca"
		}) {
			t.Errorf("%s pod has no projected token for the CA: %v", id, pod.Spec.Volumes)
		}
		svc := waitService(t, ctx, client, id+"-dapr")
		if svc.Spec.ClusterIP != corev1.ClusterIPNone || len(svc.OwnerReferences) != 1 || svc.OwnerReferences[0].Name != id {
			t.Errorf("service %s: clusterIP %q owners %v", svc.Name, svc.Spec.ClusterIP, svc.OwnerReferences)
		}
		if ports := svc.Spec.Ports; len(ports) != 4 || ports[0].Port != 80 || ports[0].TargetPort.IntValue() != 3500 || ports[1].Port != 50001 || ports[2].Port != 50002 || ports[3].Port != 9090 {
			t.Errorf("service %s ports %v", svc.Name, svc.Spec.Ports)
		}
	}

	// The injector's CA: the trust bundle's ConfigMap is in the namespace
	// of the injected pods, and a pod's own token gets its certificate.
	var cm *corev1.ConfigMap
	for cm == nil && ctx.Err() == nil {
		if got, err := client.CoreV1().ConfigMaps("default").Get(ctx, "tandem-trust-bundle", metav1.GetOptions{}); err == nil {
			cm = got
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if cm == nil || !strings.Contains(cm.Data["ca.crt"], "BEGIN CERTIFICATE") {
		t.Fatalf("no trust bundle ConfigMap in the injected pods' namespace: %v", cm)
	}
	bundleFile := filepath.Join(t.TempDir(), "ca.crt")
	_ = os.WriteFile(bundleFile, []byte(cm.Data["ca.crt"]), 0o600)
	addPod := waitPod(t, ctx, client, "addapp")
	exp := int64(600)
	tr, err := client.CoreV1().ServiceAccounts("default").CreateToken(ctx, cmpOr(addPod.Spec.ServiceAccountName, "default"), &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		Audiences: []string{"tandem-ca"}, ExpirationSeconds: &exp,
		BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: addPod.Name, UID: addPod.UID},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	_ = os.WriteFile(tokenFile, []byte(tr.Status.Token), 0o600)
	csrKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, csrKey)
	for app, ok := range map[string]bool{"addapp": true, "divideapp": false} {
		issue, err := identity.RemoteIssuer(caAddr, tokenFile, bundleFile, identity.ID{TrustDomain: "public", Namespace: "default", AppID: app})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := issue(ctx, csr); (err == nil) != ok {
			t.Errorf("addapp's pod asking for %s's certificate: %v", app, err)
		}
	}

	// Deleting a Deployment deletes its Service (owner reference, garbage collector).
	bg := metav1.DeletePropagationBackground
	if err := client.AppsV1().Deployments("default").Delete(ctx, "addapp", metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ctx, client, "addapp-dapr")

	// A new app id moves the Service.
	d, err := client.AppsV1().Deployments("default").Get(ctx, "subtractapp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Template.Annotations["dapr.io/app-id"] = "minusapp"
	if _, err := client.AppsV1().Deployments("default").Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitService(t, ctx, client, "minusapp-dapr")
	waitGone(t, ctx, client, "subtractapp-dapr")

	// A bad annotation is refused at apply time, with its message.
	bad := objects(t, "../../samples/calculator/deploy/subtractapp.yaml")[0]
	bad.SetName("badapp")
	_ = unstructured.SetNestedField(bad.Object, "sixty", "spec", "template", "metadata", "annotations", "dapr.io/app-port")
	err = ap.create(ctx, "default", bad)
	if err == nil || !strings.Contains(err.Error(), `dapr.io/app-port "sixty" is not a port; accepted: 1 to 65535`) {
		t.Errorf("a Deployment with a bad annotation: %v", err)
	}
	// dapr.io/env cannot set what the injector sets (a Secret's token, the
	// namespace), and quantities past what a resource holds are refused.
	for _, c := range []struct{ annotation, value, says string }{
		{"dapr.io/env", "DAPR_API_TOKEN=mine,NAMESPACE=kube-system", "DAPR_API_TOKEN"},
		{"dapr.io/sidecar-memory-limit", "999999Ei", "dapr.io/sidecar-memory-limit"},
		{"dapr.io/sidecar-cpu-request", "1e100", "dapr.io/sidecar-cpu-request"},
	} {
		bad := objects(t, "../../samples/calculator/deploy/subtractapp.yaml")[0]
		bad.SetName("badapp")
		_ = unstructured.SetNestedField(bad.Object, c.value, "spec", "template", "metadata", "annotations", c.annotation)
		if err := ap.create(ctx, "default", bad); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("a Deployment with %s: %s: %v; want a refusal naming %s", c.annotation, c.value, err, c.says)
		}
	}

	// A pod created by a user, not a controller, is admitted untouched,
	// with a warning saying why.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "by-hand", Annotations: map[string]string{"dapr.io/enabled": "true", "dapr.io/app-id": "byhand"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	created, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(created.Spec.Containers) != 1 || !strings.Contains(warn.all(), "was not injected") {
		t.Errorf("a user's pod: containers %d, warnings %q", len(created.Spec.Containers), warn.all())
	}
}

// waitPod waits for a pod whose sidecar annotation or name says it belongs to app.
func waitPod(t *testing.T, ctx context.Context, client kubernetes.Interface, app string) corev1.Pod {
	t.Helper()
	for {
		pods, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, p := range pods.Items {
				if strings.HasPrefix(p.Name, app+"-") {
					return p
				}
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("no pod of %s", app)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitService(t *testing.T, ctx context.Context, client kubernetes.Interface, name string) *corev1.Service {
	t.Helper()
	for {
		s, err := client.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			return s
		}
		if ctx.Err() != nil {
			t.Fatalf("no Service %s", name)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitGone(t *testing.T, ctx context.Context, client kubernetes.Interface, name string) {
	t.Helper()
	for {
		_, err := client.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("Service %s is still there", name)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// retry repeats f while the API server is not ready for it (a CRD being
// established, the default service account not yet created).
func retry(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil || ctx.Err() != nil {
			return err
		}
		if !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) && !errors.Is(err, io.EOF) && !apierrors.IsForbidden(err) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
