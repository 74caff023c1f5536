// Package kubecluster starts a real Kubernetes control plane on loopback for
// tests: etcd, kube-apiserver and kube-controller-manager, built from the
// versions pinned under tools/ (tools/build caches them). No kubelet runs,
// so pods stay Pending; everything the API server and the controllers do
// (admission webhooks, ReplicaSets creating pods, garbage collection of
// owned objects) happens for real.
package kubecluster

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/toolbin"
)

// Cluster is a running control plane.
type Cluster struct {
	// Kubeconfig is a kubeconfig file for an administrator (system:masters).
	Kubeconfig string
	// Config is the same as a rest.Config.
	Config *rest.Config
	Client kubernetes.Interface
	// URL is the API server's address; CAFile verifies its certificate.
	URL, CAFile string
	// Token is the administrator's bearer token.
	Token string
}

// Start starts the control plane and stops it when the test ends. Its
// processes' output is logged if the test fails.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bins := toolbin.Paths(t, "etcd", "kube-apiserver", "kube-controller-manager")
	dir := t.TempDir()
	pt := proc.For(t)
	port := func() string { return strconv.Itoa(pt.FreePort()) }

	// etcd
	etcdClient, etcdPeer := port(), port()
	pt.Start("etcd", bins[0], nil,
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:"+etcdClient,
		"--advertise-client-urls", "http://127.0.0.1:"+etcdClient,
		"--listen-peer-urls", "http://127.0.0.1:"+etcdPeer,
		"--initial-advertise-peer-urls", "http://127.0.0.1:"+etcdPeer,
		"--initial-cluster", "default=http://127.0.0.1:"+etcdPeer,
		"--log-level", "warn",
		"--unsafe-no-fsync",
	)
	pt.WaitTCP("127.0.0.1:"+etcdClient, 30*time.Second)

	// kube-apiserver
	saKey, saPub := serviceAccountKeys(t, dir)
	token := "tandem-test-admin-token"
	tokens := filepath.Join(dir, "tokens.csv")
	write(t, tokens, token+",admin,admin,system:masters\n")
	certDir := filepath.Join(dir, "apiserver")
	apiPort := port()
	api := pt.Start("kube-apiserver", bins[1], nil,
		"--etcd-servers", "http://127.0.0.1:"+etcdClient,
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--secure-port", apiPort,
		"--cert-dir", certDir,
		"--token-auth-file", tokens,
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", saPub,
		"--service-account-signing-key-file", saKey,
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--api-audiences", "https://kubernetes.default.svc.cluster.local",
		// The kubernetes Service's endpoints would be 127.0.0.1, which the
		// reconciler refuses; nothing here needs them.
		"--endpoint-reconciler-type", "none",
		// Webhooks behind a Service are called at its endpoints (the pods'
		// addresses) rather than its cluster IP: no kube-proxy runs here.
		"--enable-aggregator-routing=true",
		"--v", "1",
	)
	url := "https://127.0.0.1:" + apiPort
	caFile := filepath.Join(certDir, "apiserver.crt")
	c := &Cluster{URL: url, CAFile: caFile, Token: token, Kubeconfig: filepath.Join(dir, "kubeconfig")}
	waitReady(t, c, caFile, api.Done())
	write(t, c.Kubeconfig, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, url, caFile, token))
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c.Config = cfg
	if c.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}

	// kube-controller-manager, with a service account per controller, as
	// in most clusters: pods come from system:serviceaccount:kube-system:replicaset-controller.
	pt.Start("kube-controller-manager", bins[2], nil,
		"--kubeconfig", c.Kubeconfig,
		"--authentication-kubeconfig", c.Kubeconfig,
		"--authorization-kubeconfig", c.Kubeconfig,
		"--bind-address", "127.0.0.1",
		"--secure-port", port(),
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file", saKey,
		"--root-ca-file", caFile,
		"--cluster-name", "tandem-test",
		"--controllers", "*",
		"--v", "1",
	)
	return c
}

// waitReady waits for /readyz, which answers once the API server has its
// storage and bootstrap policies.
func waitReady(t testing.TB, c *Cluster, caFile string, api <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-api:
			t.Fatal("kube-apiserver exited while starting")
		default:
		}
		if _, err := os.Stat(caFile); err == nil {
			cfg := &rest.Config{Host: c.URL, BearerToken: c.Token, TLSClientConfig: rest.TLSClientConfig{CAFile: caFile}}
			if cs, err := kubernetes.NewForConfig(cfg); err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				b, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
				cancel()
				if err == nil && strings.TrimSpace(string(b)) == "ok" {
					return
				}
				last = fmt.Sprint(err, string(b))
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("kube-apiserver not ready after 90 s: %s", last)
}

func serviceAccountKeys(t testing.TB, dir string) (keyFile, pubFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile, pubFile = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	write(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})))
	write(t, pubFile, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})))
	return keyFile, pubFile
}

func write(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// NodeName is the Node that PlayKubelet binds pods to.
const NodeName = "tandem-test-node"

// PlayKubelet does for one pod what a kubelet would: binds it to a Node (made
// on first use), and reports it running and ready at ip, where the test runs
// its process. Controllers then treat it as any running pod: the
// EndpointSlices of its Services list it, and Services route to it.
func (c *Cluster) PlayKubelet(ctx context.Context, namespace, pod, ip string) error {
	nodes := c.Client.CoreV1().Nodes()
	if _, err := nodes.Get(ctx, NodeName, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		_, err = nodes.Create(ctx, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: NodeName},
			Status: corev1.NodeStatus{
				Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}},
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			},
		}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	} else if err != nil {
		return err
	}
	pods := c.Client.CoreV1().Pods(namespace)
	err := pods.Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod},
		Target:     corev1.ObjectReference{Kind: "Node", Name: NodeName},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("binding pod %s/%s: %w", namespace, pod, err)
	}
	p, err := pods.Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	p.Status.Phase = corev1.PodRunning
	p.Status.HostIP, p.Status.HostIPs = ip, []corev1.HostIP{{IP: ip}}
	p.Status.PodIP, p.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	p.Status.StartTime = &now
	p.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
	_, err = pods.UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return err
}
