package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-run/tandem/internal/ca"
	"github.com/tandem-run/tandem/internal/testutil/kubecluster"
	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/resources"
	"github.com/tandem-run/tandem/internal/testutil/toolbin"
)

// startCoreDNS runs CoreDNS with its kubernetes plugin on the cluster, as a
// cluster's DNS, and returns its address once it answers for name.
func startCoreDNS(t *testing.T, c *kubecluster.Cluster, name string) string {
	t.Helper()
	bin := toolbin.Path(t, "coredns")
	port := proc.For(t).FreePort()
	corefile := filepath.Join(t.TempDir(), "Corefile")
	if err := os.WriteFile(corefile, []byte(`cluster.local:`+strconv.Itoa(port)+` {
    bind 127.0.0.1
    kubernetes cluster.local {
        kubeconfig `+c.Kubeconfig+` test
    }
    errors
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	proc.For(t).Start("coredns", bin, nil, "-conf", corefile)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		if r, _, err := new(dns.Client).Exchange(m, addr); err == nil && len(r.Answer) > 0 {
			return addr
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("CoreDNS at %s does not answer for %s", addr, name)
	return ""
}

// spanCollector is a Zipkin span endpoint that keeps the service names it sees.
type spanCollector struct {
	mu       sync.Mutex
	services map[string]bool
}

func (s *spanCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var spans []struct {
		LocalEndpoint struct{ ServiceName string } `json:"localEndpoint"`
	}
	_ = json.NewDecoder(r.Body).Decode(&spans)
	s.mu.Lock()
	for _, sp := range spans {
		s.services[sp.LocalEndpoint.ServiceName] = true
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (s *spanCollector) has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.services[name]
}

// hostAddress returns an IPv4 address of this host that is not loopback.
func hostAddress(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Fatal("this host has no IPv4 address but loopback; the kubernetes-mode test needs one for an EndpointSlice")
	return ""
}

// TestKubernetesMode runs two sidecars in kubernetes mode against a real
// API server and CoreDNS: they read their Components and Configuration from
// the API server, get their certificates from the control plane's CA, and
// one finds the other through the DNS name of its headless Service, whose
// EndpointSlice points at the address the other listens on; the call is
// mutual TLS and the app sees the caller's verified id.
func TestKubernetesMode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kubernetes control plane")
	}
	c := kubecluster.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ap := newApplier(t, c.Config)
	for _, o := range objects(t, "../../charts/tandem/crds/components.yaml", "../../charts/tandem/crds/configurations.yaml") {
		if err := ap.create(ctx, "", o); err != nil {
			t.Fatal(err)
		}
	}
	col := &spanCollector{services: map[string]bool{}}
	zipkin := httptest.NewServer(col)
	defer zipkin.Close()
	dir := t.TempDir()
	res := filepath.Join(dir, "resources.yaml")
	if err := os.WriteFile(res, []byte(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.in-memory
  version: v1
  metadata: []
---
`+string(resources.ZipkinYAML("appconfig", zipkin.URL+"/api/v2/spans"))), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, o := range objects(t, res) {
		if err := retry(ctx, func() error { return ap.create(ctx, "default", o) }); err != nil {
			t.Fatal(err)
		}
	}

	// addapp's sidecar listens on an address of this host's network (the
	// API server refuses loopback addresses in EndpointSlices), as a pod
	// listens on its own.
	hostIP := hostAddress(t)
	internal := proc.For(t).FreePort()
	_, err := c.Client.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "addapp-dapr"},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "dapr-internal", Port: int32(internal)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ready, proto, portName, port := true, corev1.ProtocolTCP, "dapr-internal", int32(internal)
	_, err = c.Client.DiscoveryV1().EndpointSlices("default").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "addapp-dapr-1", Labels: map[string]string{discoveryv1.LabelServiceName: "addapp-dapr"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{hostIP}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Protocol: &proto, Port: &port}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dnsAddr := startCoreDNS(t, c, "addapp-dapr.default.svc.cluster.local")

	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(c.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"NAMESPACE=default", "TANDEM_KUBE_API=" + c.URL, "TANDEM_KUBE_TOKEN_FILE=" + tokenFile, "TANDEM_KUBE_CA_FILE=" + c.CAFile}
	// Mutual TLS with certificates of the control plane's CA, which each
	// sidecar gets with a token bound to its pod.
	caAddr, bundle := caServer(t, ctx, c.Client)
	kubeSidecar := func(id, ip string, appPort int) string {
		httpPort := proc.For(t).FreePort()
		sentryToken := podWithToken(t, ctx, c, "default", id+"-sa", id+"-pod", id, ca.Audience)
		args := []string{"--mode", "kubernetes", "--app-id", id, "--config", "appconfig",
			"--enable-mtls", "--sentry-address", caAddr, "--sentry-token-file", sentryToken, "--trust-anchors-file", bundle,
			"--dapr-http-port", strconv.Itoa(httpPort), "--dapr-grpc-port", "0", "--metrics-port", "0",
			"--dapr-listen-addresses", "127.0.0.1",
			"--dapr-internal-grpc-port", strconv.Itoa(internal), "--dapr-internal-listen-address", ip,
			"--kubernetes-dns-server", dnsAddr, "--log-level", "debug"}
		if appPort != 0 {
			args = append(args, "--app-port", strconv.Itoa(appPort))
		}
		proc.For(t).Start("sidecar "+id, sidecarBin, env, args...)
		proc.For(t).WaitTCP("127.0.0.1:"+strconv.Itoa(httpPort), listenWait)
		return "http://127.0.0.1:" + strconv.Itoa(httpPort)
	}
	appPort, _ := newWorld(t).app("addapp")
	callee := kubeSidecar("addapp", hostIP, appPort)
	caller := kubeSidecar("front", "127.0.0.2", 0)
	(&sidecar{url: callee, appID: "addapp"}).waitHealthy(t)

	resp, b := do(t, "POST", caller+"/v1.0/invoke/addapp/method/echo/hi", strings.NewReader("x"), nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"Dapr-Caller-App-Id":["front"]`) {
		t.Fatalf("invoke through Kubernetes DNS: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, "GET", caller+"/v1.0/invoke/nosuchapp/method/x", nil, nil)
	if resp.StatusCode != 500 || !strings.Contains(string(b), "nosuchapp") {
		t.Errorf("unknown app: %d %s", resp.StatusCode, b)
	}
	// The state store is the Component of the API server: kubernetes mode
	// has no embedded default.
	resp, b = do(t, "POST", caller+"/v1.0/state/statestore", strings.NewReader(`[{"key":"k","value":"v"}]`), nil)
	if resp.StatusCode != 204 {
		t.Fatalf("save: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, "GET", caller+"/v1.0/metadata", nil, nil)
	if !strings.Contains(string(b), `"name":"statestore","type":"state.in-memory"`) {
		t.Errorf("metadata: %s", b)
	}
	// The Configuration of the API server turned tracing on for both.
	deadline := time.Now().Add(15 * time.Second)
	for !(col.has("front") && col.has("addapp")) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if !col.has("front") || !col.has("addapp") {
		t.Errorf("spans from %v, want front and addapp", col.services)
	}
}
