// Package netns gives a test a private network of Linux network
// namespaces, so that it can cut one process off from some others while
// the test itself still reaches all of them: what stopping a process on
// loopback cannot do.
//
// New makes a bridge in a namespace of its own and a link from the test's
// namespace to it, on a /24 of 10.213.0.0/16 that no route of the machine
// uses; Add puts a namespace with one address on the bridge. The test's
// own address is .1, the namespaces' .2, .3, and so on. Nothing is routed
// off the machine, and the test's namespace gets no firewall rule: Cut
// drops traffic with iptables inside a namespace the test made.
//
// Every namespace is named tfo-<pid>-<name> after the test process, and
// the test's link tfo<pid>. When the test ends, the processes left in its
// namespaces are killed and the namespaces and the link removed; New first
// sweeps those of test processes no longer running (a test killed by its
// timeout).
//
// It needs root and the ip and iptables commands: without them New skips
// the test, saying so.
package netns

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// prefix starts every name this package gives a namespace or a link.
const prefix = "tfo"

// Network is a bridge that the test and its namespaces are on.
type Network struct {
	t      testing.TB
	subnet string // first three octets, "10.213.7"
	sw     string // the bridge's namespace
	host   string // the test's end of its link to the bridge
	ns     []*Namespace
}

// Namespace is a network namespace on a Network.
type Namespace struct {
	// Name is the namespace's name, as ip netns knows it.
	Name string
	// IP is its address on the network.
	IP string
}

// HostIP is the test's own address on the network.
func (n *Network) HostIP() string { return n.subnet + ".1" }

// New makes a network for t, removed when t ends, and skips t if network
// namespaces cannot be made here.
func New(t testing.TB) *Network {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root (ip netns add): run this test as root")
	}
	for _, c := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("network namespaces need the %s command: apt-get install -y iproute2 iptables", c)
		}
	}
	sweep(t.Logf)
	pid := strconv.Itoa(os.Getpid())
	n := &Network{t: t, sw: prefix + "-" + pid + "-sw", host: prefix + pid}
	t.Cleanup(n.remove)
	if err := run("ip", "netns", "add", n.sw); err != nil {
		t.Skipf("cannot make a network namespace here: %v", err)
	}
	unlock, err := lock()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if n.subnet, err = freeSubnet(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	n.must(
		[]string{"ip", "-n", n.sw, "link", "set", "lo", "up"},
		[]string{"ip", "-n", n.sw, "link", "add", "br0", "type", "bridge"},
		[]string{"ip", "-n", n.sw, "link", "set", "br0", "up"},
		[]string{"ip", "link", "add", n.host, "type", "veth", "peer", "name", "host", "netns", n.sw},
		[]string{"ip", "-n", n.sw, "link", "set", "host", "master", "br0", "up"},
		[]string{"ip", "addr", "add", n.HostIP() + "/24", "dev", n.host},
		[]string{"ip", "link", "set", n.host, "up"},
	)
	return n
}

// Add makes a namespace called name (a few letters) on the network.
func (n *Network) Add(name string) *Namespace {
	n.t.Helper()
	ns := &Namespace{Name: prefix + "-" + strconv.Itoa(os.Getpid()) + "-" + name, IP: n.subnet + "." + strconv.Itoa(len(n.ns)+2)}
	if err := run("ip", "netns", "add", ns.Name); err != nil {
		n.t.Fatal(err)
	}
	n.ns = append(n.ns, ns)
	v := "v" + strconv.Itoa(len(n.ns))
	n.must(
		[]string{"ip", "-n", ns.Name, "link", "set", "lo", "up"},
		[]string{"ip", "-n", n.sw, "link", "add", v, "type", "veth", "peer", "name", "eth0", "netns", ns.Name},
		[]string{"ip", "-n", n.sw, "link", "set", v, "master", "br0", "up"},
		[]string{"ip", "-n", ns.Name, "addr", "add", ns.IP + "/24", "dev", "eth0"},
		[]string{"ip", "-n", ns.Name, "link", "set", "eth0", "up"},
	)
	return ns
}

// Command is exec.Command run in the namespace.
func (ns *Namespace) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Cut drops every packet between a and each of others, in a's firewall:
// connections between them hang as over a broken link, neither side is
// told. The test and the other namespaces still reach a.
func (n *Network) Cut(a *Namespace, others ...*Namespace) {
	n.t.Helper()
	for _, o := range others {
		n.must(
			[]string{"ip", "netns", "exec", a.Name, "iptables", "-w", "-A", "INPUT", "-s", o.IP, "-j", "DROP"},
			[]string{"ip", "netns", "exec", a.Name, "iptables", "-w", "-A", "OUTPUT", "-d", o.IP, "-j", "DROP"},
		)
	}
}

// Heal removes what Cut put in a's firewall.
func (n *Network) Heal(a *Namespace) {
	n.t.Helper()
	n.must([]string{"ip", "netns", "exec", a.Name, "iptables", "-w", "-F"})
}

func (n *Network) must(cmds ...[]string) {
	n.t.Helper()
	for _, c := range cmds {
		if err := run(c[0], c[1:]...); err != nil {
			n.t.Fatal(err)
		}
	}
}

// remove kills what runs in the network's namespaces and removes them and
// the test's link.
func (n *Network) remove() {
	var errs []error
	for _, ns := range n.ns {
		errs = append(errs, removeNS(ns.Name))
	}
	errs = append(errs, removeNS(n.sw))
	// The link goes with the bridge's namespace, though not at once.
	for deadline := time.Now().Add(5 * time.Second); linkExists(n.host) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if linkExists(n.host) {
		errs = append(errs, run("ip", "link", "del", n.host))
	}
	if err := errors.Join(errs...); err != nil {
		n.t.Errorf("removing the test's network: %v", err)
	}
}

// sweep removes the namespaces and links of test processes that are gone.
func sweep(logf func(string, ...any)) {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for line := range strings.SplitSeq(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if pid, ok := owner(name); ok && !alive(pid) {
			logf("netns: removing %s, left by process %d", name, pid)
			if err := removeNS(name); err != nil {
				logf("netns: %v", err)
			}
		}
	}
	out, _ = exec.Command("ip", "-o", "link", "show").Output()
	for line := range strings.SplitSeq(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if p, ok := strings.CutPrefix(name, prefix); ok {
			if pid, err := strconv.Atoi(p); err == nil && !alive(pid) {
				logf("netns: removing link %s, left by process %d", name, pid)
				_ = run("ip", "link", "del", name)
			}
		}
	}
}

// owner returns the test process a namespace name names.
func owner(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix+"-")
	if !ok {
		return 0, false
	}
	p, _, ok := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(p)
	return pid, ok && err == nil
}

func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// removeNS kills the processes in the namespace and removes it.
func removeNS(name string) error {
	out, err := exec.Command("ip", "netns", "pids", name).Output()
	if err != nil {
		return nil // gone
	}
	for f := range strings.FieldsSeq(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return run("ip", "netns", "del", name)
}

func linkExists(name string) bool {
	return exec.Command("ip", "link", "show", name).Run() == nil
}

// freeSubnet returns a /24 of 10.213.0.0/16 that no address or route of
// the machine is in, starting from one the pid picks.
func freeSubnet(pid int) (string, error) {
	addrs, _ := exec.Command("ip", "-4", "-o", "addr", "show").Output()
	routes, _ := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	used := string(addrs) + string(routes)
	for i := range 250 {
		s := "10.213." + strconv.Itoa((pid+i)%250+1)
		if !strings.Contains(used, s+".") {
			return s, nil
		}
	}
	return "", errors.New("netns: every /24 of 10.213.0.0/16 is in use on this machine")
}

// lock serializes the choice of subnets between test processes.
func lock() (func(), error) {
	f, err := os.OpenFile(os.TempDir()+"/tandem-netns.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("netns: locking %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

func run(name string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}
