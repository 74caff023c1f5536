package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/proc"
)

// Tokens of the control plane's users (a static token file: this cluster
// lives for one test run).
const (
	adminToken   = "tandem-node-admin"
	kubeletToken = "tandem-node-kubelet"
)

// buildTools returns the paths of the named programs, built by tools/build
// (or found in its cache).
func buildTools(ctx context.Context, repo string, names ...string) (map[string]string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(repo, "tools", "build"), names...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("tools/build %v: %w", names, err)
	}
	paths := strings.Fields(string(out))
	if len(paths) != len(names) {
		return nil, fmt.Errorf("tools/build %v printed %q", names, out)
	}
	bins := map[string]string{}
	for i, n := range names {
		bins[n] = paths[i]
	}
	return bins, nil
}

// startControlPlane starts etcd, kube-apiserver (on the bridge address
// only), kube-controller-manager, kube-scheduler and CoreDNS, and sets c's
// client.
func (c *Cluster) startControlPlane(ctx context.Context, p *pki) error {
	dir := filepath.Join(Root, "control-plane")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer := ports[0], ports[1]
	if _, err := c.start("etcd", nil,
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:"+etcdClient,
		"--advertise-client-urls", "http://127.0.0.1:"+etcdClient,
		"--listen-peer-urls", "http://127.0.0.1:"+etcdPeer,
		"--initial-advertise-peer-urls", "http://127.0.0.1:"+etcdPeer,
		"--initial-cluster", "default=http://127.0.0.1:"+etcdPeer,
		"--listen-metrics-urls", "",
		"--log-level", "warn",
		"--unsafe-no-fsync",
	); err != nil {
		return err
	}
	if err := proc.WaitTCP("127.0.0.1:"+etcdClient, 30*time.Second); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}

	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(adminToken+",admin,admin,system:masters\n"+
		kubeletToken+",system:node:"+NodeName+",kubelet,system:nodes\n"), 0o600); err != nil {
		return err
	}
	api, err := c.start("kube-apiserver", nil,
		"--etcd-servers", "http://127.0.0.1:"+etcdClient,
		"--bind-address", BridgeIP,
		"--advertise-address", BridgeIP,
		"--secure-port", strconv.Itoa(APIPort),
		"--tls-cert-file", p.APIServerCert,
		"--tls-private-key-file", p.APIServerKey,
		"--client-ca-file", p.CA,
		"--kubelet-client-certificate", p.KubeletClientCert,
		"--kubelet-client-key", p.KubeletClientKey,
		// The node's name resolves nowhere: reach the kubelet (logs, exec,
		// port-forward) at its IP, the bridge address.
		"--kubelet-preferred-address-types", "InternalIP",
		"--token-auth-file", tokens,
		"--authorization-mode", "Node,RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", p.SAPub,
		"--service-account-signing-key-file", p.SAKey,
		"--api-audiences", "https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range", ServiceCIDR,
		// Webhooks behind a Service are called at its endpoints, the
		// pods' addresses on the bridge, which the API server reaches
		// directly.
		"--enable-aggregator-routing=true",
		"--profiling=false",
		"--v", "1",
	)
	if err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, p.CA, adminToken); err != nil {
		return err
	}
	if c.Config, c.Client, err = clientFor(c.Kubeconfig); err != nil {
		return err
	}
	if err := c.waitAPI(ctx, api); err != nil {
		return err
	}

	if _, err := c.start("kube-controller-manager", nil,
		"--kubeconfig", c.Kubeconfig,
		"--authentication-kubeconfig", c.Kubeconfig,
		"--authorization-kubeconfig", c.Kubeconfig,
		"--bind-address", "127.0.0.1",
		"--secure-port", ports[2],
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file", p.SAKey,
		"--root-ca-file", p.CA,
		"--cluster-name", "tandem-node",
		"--controllers", "*",
		"--v", "1",
	); err != nil {
		return err
	}
	if _, err := c.start("kube-scheduler", nil,
		"--kubeconfig", c.Kubeconfig,
		"--authentication-kubeconfig", c.Kubeconfig,
		"--authorization-kubeconfig", c.Kubeconfig,
		"--bind-address", "127.0.0.1",
		"--secure-port", ports[3],
		"--leader-elect=false",
		"--v", "1",
	); err != nil {
		return err
	}

	// CoreDNS answers the cluster's names on the bridge address, the
	// kubelet's clusterDNS. Nothing is forwarded: a name outside the
	// cluster gets no answer from here.
	corefile := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(corefile, []byte(`.:53 {
    bind `+BridgeIP+`
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig `+c.Kubeconfig+` node
        pods insecure
        ttl 5
    }
}
`), 0o600); err != nil {
		return err
	}
	if _, err := c.start("coredns", nil, "-conf", corefile); err != nil {
		return err
	}
	return proc.WaitTCP(BridgeIP+":53", 30*time.Second)
}

// waitAPI waits until the API server answers /readyz.
func (c *Cluster) waitAPI(ctx context.Context, api *proc.Proc) error {
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-api.Done():
			return fmt.Errorf("kube-apiserver exited while starting:\n%s", c.Output("kube-apiserver"))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		b, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		cancel()
		if err == nil && strings.TrimSpace(string(b)) == "ok" {
			return nil
		}
		last = fmt.Sprint(err, string(b))
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready after 90 s: %s", last)
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]string, error) {
	var ports []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return ports, nil
}
