package kubeclient

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewOutsideACluster(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	_, err := New("", "tandem-test")
	if err == nil || !strings.Contains(err.Error(), "give --kubeconfig outside a cluster") {
		t.Fatalf("New without a kubeconfig outside a cluster: err %v, want one that says to give --kubeconfig", err)
	}
}

func TestNewFromKubeconfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	const cfg = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: t}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(path, "tandem-test")
	if err != nil {
		t.Fatalf("New(%s): %v", path, err)
	}
	if c == nil {
		t.Fatal("New returned no client and no error")
	}
	if _, err := New(filepath.Join(t.TempDir(), "missing"), "tandem-test"); err == nil || !strings.Contains(err.Error(), "connecting to the Kubernetes API server") {
		t.Fatalf("New of a missing kubeconfig: err %v, want one naming the API server", err)
	}
}
