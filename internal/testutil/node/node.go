// Package node runs a real single-node Kubernetes cluster on this machine
// for the tests of tests/node: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and a kubelet whose pods run in containerd with runc,
// attached by the CNI bridge plugin to a Linux bridge of the harness's own,
// with CoreDNS as the cluster DNS. The Kubernetes programs and CoreDNS come
// from tools/build (cached); containerd, runc and the CNI plugins are
// Debian's (.ci/deps installs them). Images are the project's OCI tarballs
// (internal/images), imported into containerd: nothing is pulled.
//
// Network: every packet stays on this machine. The bridge tandem0 holds
// 10.244.0.1/24; pods get addresses in it from host-local IPAM and two
// routes, the bridge's subnet and the service range 10.96.0.0/16 via the
// bridge address: no default route, no masquerade, and IP forwarding stays
// off (Start refuses to run with it on). ClusterIP Services work without
// kube-proxy: TCP from the bridge (or this host) to the service range is
// redirected by one iptables rule to a proxy in this process that reads each
// connection's original destination and relays it to a ready endpoint of
// the Service, as kube-proxy's old userspace mode did. The kubernetes
// Service reaches the API server that way, which listens on the bridge
// address only.
//
// One node per machine: Start holds a lock (/run/lock/tandem-node.lock)
// until Stop. Everything lives under Root, plus the few paths containerd
// 1.6, libcni and the kubelet hard-code (/run/containerd,
// /var/lib/cni, /var/lib/kubelet/device-plugins, /var/log/containers),
// removed again when the node made them. Start first sweeps whatever an
// earlier run left (a test binary killed by its timeout runs no cleanup),
// and Stop sweeps the same way: every process whose command line names Root
// (containerd's shims included) and every process in the kubepods cgroups
// is killed, the mounts under Root unmounted, the kubepods cgroups, the
// bridge, the iptables rules and the route removed, and the kernel settings
// the kubelet changes put back. Leftovers lists what is still there.
package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tandem-run/tandem/internal/testutil/proc"
)

// The node's fixed names and addresses.
const (
	// Root holds every file of the node: wiped by each sweep.
	Root = "/var/lib/tandem-node"
	// Bridge is the pods' bridge and BridgeIP its address: the node's IP,
	// where the API server, CoreDNS and the service proxy listen.
	Bridge   = "tandem0"
	BridgeIP = "10.244.0.1"
	PodCIDR  = "10.244.0.0/24"
	// ServiceCIDR is the Services' cluster IP range; APIServiceIP is the
	// kubernetes Service's.
	ServiceCIDR  = "10.96.0.0/16"
	APIServiceIP = "10.96.0.1"
	// NodeName is the one node's name.
	NodeName = "tandem-node"
	// APIPort is the API server's port on BridgeIP.
	APIPort = 6443

	lockFile = "/run/lock/tandem-node.lock"
	// ruleComment marks the node's iptables rules.
	ruleComment = "tandem-node"
)

// Options says what the node runs.
type Options struct {
	// Repo is the repository (tools/build is run there).
	Repo string
	// Images are OCI tarballs to import into containerd before the kubelet
	// starts; Pause is the name of the pod sandbox image among them.
	Images []string
	Pause  string
	// Logf reports progress; nil: nothing.
	Logf func(format string, args ...any)
}

// Cluster is a running node and its control plane.
type Cluster struct {
	// Kubeconfig is an administrator's (system:masters) kubeconfig file;
	// Config and Client are the same.
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface
	bins       map[string]string
	procs      []*proc.Proc
	proxy      *serviceProxy
	lock       *os.File
	logf       func(string, ...any)
	cancel     context.CancelFunc
}

// Start sweeps what an earlier run left, then starts the control plane,
// containerd and the kubelet, and returns once the node is Ready. On error
// it has stopped what it started.
func Start(ctx context.Context, o Options) (c *Cluster, err error) {
	c = &Cluster{logf: o.Logf}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	if err := preflight(); err != nil {
		return nil, err
	}
	if c.lock, err = takeLock(ctx, c.logf); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if serr := c.Stop(); serr != nil {
				err = fmt.Errorf("%w (and stopping: %v)", err, serr)
			}
			c = nil
		}
	}()
	if err := sweep(c.logf); err != nil {
		return c, fmt.Errorf("sweeping an earlier run's leftovers: %w", err)
	}
	if err := os.MkdirAll(Root, 0o755); err != nil {
		return c, err
	}
	if err := saveSysctls(); err != nil {
		return c, err
	}
	names := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "coredns"}
	c.bins, err = buildTools(ctx, o.Repo, names...)
	if err != nil {
		return c, err
	}
	start := time.Now()
	if err := setUpNetwork(); err != nil {
		return c, err
	}
	pki, err := makePKI(filepath.Join(Root, "pki"))
	if err != nil {
		return c, err
	}
	if err := c.startControlPlane(ctx, pki); err != nil {
		return c, err
	}
	c.logf("node: control plane up in %s", time.Since(start).Round(100*time.Millisecond))
	pctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	if c.proxy, err = startServiceProxy(pctx, c.Client, c.logf); err != nil {
		return c, err
	}
	if err := c.startContainerd(ctx, o.Images, o.Pause); err != nil {
		return c, err
	}
	if err := c.startKubelet(ctx, pki); err != nil {
		return c, err
	}
	c.logf("node: %s Ready %s after start", NodeName, time.Since(start).Round(100*time.Millisecond))
	return c, nil
}

// Stop stops everything Start started and sweeps: it returns an error
// naming anything still left on the machine.
func (c *Cluster) Stop() error {
	if c.cancel != nil {
		c.cancel()
	}
	if c.proxy != nil {
		c.proxy.close()
	}
	// The kubelet first, so that it restarts nothing; the rest in reverse.
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		if p.Name == "kubelet" {
			_ = p.Stop(syscall.SIGTERM, 10*time.Second)
		}
	}
	killContainers(c.logf)
	for i := len(c.procs) - 1; i >= 0; i-- {
		_ = c.procs[i].Stop(syscall.SIGTERM, 10*time.Second)
	}
	err := sweep(c.logf)
	if left := Leftovers(); len(left) > 0 {
		err = errors.Join(err, fmt.Errorf("left on the machine after the node stopped: %s", strings.Join(left, "; ")))
	}
	if c.lock != nil {
		c.lock.Close() // releases the flock
	}
	return err
}

// Output is what the named process of the node wrote (its last 64 KiB),
// for a failed test's log.
func (c *Cluster) Output(name string) string {
	for _, p := range c.procs {
		if p.Name == name {
			s := p.Out.String()
			if len(s) > 64<<10 {
				s = "...\n" + s[len(s)-64<<10:]
			}
			return s
		}
	}
	return ""
}

// start starts a process of the node; it dies with this process
// (proc.Start's parent-death signal), and the sweep finds it by Root in its
// command line should it outlive it anyway.
func (c *Cluster) start(name string, env []string, args ...string) (*proc.Proc, error) {
	p, err := proc.Start(name, c.bins[name], env, args...)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

// preflight checks what the node needs of this machine.
func preflight() error {
	if os.Geteuid() != 0 {
		return errors.New("the real node needs root (network, mounts, cgroups)")
	}
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is not installed (.ci/deps installs containerd, runc, containernetworking-plugins and iptables)", bin)
		}
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, plugin)); err != nil {
			return fmt.Errorf("CNI plugin %s is not in %s (Debian package containernetworking-plugins)", plugin, cniBinDir)
		}
	}
	if fwd, err := readSysctl("net.ipv4.ip_forward"); err != nil || fwd != "0" {
		return fmt.Errorf("net.ipv4.ip_forward is %q: the node keeps every packet on this machine and runs with forwarding off only", fwd)
	}
	return nil
}

// takeLock holds the machine's node lock, waiting for another run's node.
func takeLock(ctx context.Context, logf func(string, ...any)) (*os.File, error) {
	f, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for waited := false; ; {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", lockFile, err)
		}
		if !waited {
			logf("node: another run holds %s; waiting", lockFile)
			waited = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for %s: %w", lockFile, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// kubeconfig writes a kubeconfig for the API server with a bearer token.
func writeKubeconfig(path, caFile, token string) error {
	return os.WriteFile(path, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: node
  cluster:
    server: https://%s:%d
    certificate-authority: %s
users:
- name: user
  user:
    token: %s
contexts:
- name: node
  context: {cluster: node, user: user}
current-context: node
`, BridgeIP, APIPort, caFile, token)), 0o600)
}

func clientFor(kubeconfig string) (*rest.Config, kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	return cfg, cs, err
}
