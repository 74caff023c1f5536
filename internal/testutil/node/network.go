package node

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// cniBinDir is where Debian's containernetworking-plugins are.
const cniBinDir = "/usr/lib/cni"

// cniNetwork is the pods' network: the bridge plugin on our bridge, which
// it does not make a gateway (the address is ours) and masquerades nothing,
// and host-local addresses with two routes only: the bridge's subnet, and
// the service range through the bridge address, where the service proxy
// answers.
func cniNetwork() ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       "tandem-node",
		"plugins": []any{map[string]any{
			"type":        "bridge",
			"bridge":      Bridge,
			"isGateway":   false,
			"ipMasq":      false,
			"hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": PodCIDR, "rangeStart": "10.244.0.10"}}},
				"routes":  []map[string]string{{"dst": ServiceCIDR, "gw": BridgeIP}},
				"dataDir": filepath.Join(Root, "cni", "ipam"),
			},
		}},
	}, "", "  ")
}

// setUpNetwork makes the bridge and routes the service range onto it: a
// packet for a cluster IP that no rule redirects goes nowhere but the
// bridge.
func setUpNetwork() error {
	for _, args := range [][]string{
		{"link", "add", Bridge, "type", "bridge"},
		{"addr", "add", BridgeIP + "/24", "dev", Bridge},
		{"link", "set", Bridge, "up"},
		{"route", "add", ServiceCIDR, "dev", Bridge, "src", BridgeIP},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// redirectRules are the iptables rules that send TCP for the service range
// to the service proxy: from pods (arriving on the bridge) to its listener
// on the bridge address, and from this host to its listener on loopback.
func redirectRules(port int) [][]string {
	p := strconv.Itoa(port)
	return [][]string{
		{"-t", "nat", "PREROUTING", "-i", Bridge, "-d", ServiceCIDR, "-p", "tcp", "-m", "comment", "--comment", ruleComment, "-j", "REDIRECT", "--to-ports", p},
		{"-t", "nat", "OUTPUT", "-d", ServiceCIDR, "-p", "tcp", "-m", "comment", "--comment", ruleComment, "-j", "REDIRECT", "--to-ports", p},
	}
}

func addRules(rules [][]string) error {
	for _, r := range rules {
		args := append([]string{"-w", r[0], r[1], "-A"}, r[2:]...)
		if err := run("iptables", args...); err != nil {
			return err
		}
	}
	return nil
}

// kubeletChains are the iptables chains the kubelet may make even with
// makeIPTablesUtilChains off (its canary, which tells it that the rules were
// flushed); nothing else named KUBE-* is ours to delete.
var kubeletChains = []string{"KUBE-KUBELET-CANARY"}

// deleteRules deletes every iptables rule carrying ruleComment, and the
// kubelet's chains, in each table.
func deleteRules() error {
	var errs []string
	for _, table := range []string{"nat", "filter", "mangle"} {
		for _, cmd := range []string{"iptables", "ip6tables"} {
			out, err := exec.Command(cmd, "-w", "-t", table, "-S").Output()
			if err != nil {
				continue // no such table or command: nothing of ours
			}
			for line := range strings.SplitSeq(string(out), "\n") {
				if strings.HasPrefix(line, "-A ") && strings.Contains(line, ruleComment) {
					args := append([]string{"-w", "-t", table, "-D"}, strings.Fields(strings.TrimPrefix(line, "-A "))...)
					// The comment is quoted in -S output only when it
					// has spaces; ours has none.
					if err := run(cmd, args...); err != nil {
						errs = append(errs, err.Error())
					}
				}
			}
			for line := range strings.SplitSeq(string(out), "\n") {
				if chain, ok := strings.CutPrefix(line, "-N "); ok && slices.Contains(kubeletChains, chain) {
					_ = run(cmd, "-w", "-t", table, "-F", chain)
					if err := run(cmd, "-w", "-t", table, "-X", chain); err != nil {
						errs = append(errs, err.Error())
					}
				}
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("iptables: %s", strings.Join(errs, "; "))
	}
	return nil
}

// The kernel settings the kubelet changes (protectKernelDefaults: false),
// saved before it starts and put back by the sweep.
var kubeletSysctls = []string{"vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops"}

func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

func readSysctl(name string) (string, error) {
	b, err := os.ReadFile(sysctlPath(name))
	return strings.TrimSpace(string(b)), err
}

// savedSysctls is outside Root's wiped folders: the sweep reads it first.
var savedSysctls = filepath.Join(Root, "sysctls.json")

func saveSysctls() error {
	saved := map[string]string{}
	for _, name := range kubeletSysctls {
		v, err := readSysctl(name)
		if err != nil {
			return err
		}
		saved[name] = v
	}
	b, _ := json.Marshal(saved)
	return os.WriteFile(savedSysctls, b, 0o600)
}

// restoreSysctls puts back what saveSysctls saved, if it did.
func restoreSysctls() error {
	b, err := os.ReadFile(savedSysctls)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var saved map[string]string
	if err := json.Unmarshal(b, &saved); err != nil {
		return fmt.Errorf("%s: %w", savedSysctls, err)
	}
	for name, v := range saved {
		if err := os.WriteFile(sysctlPath(name), []byte(v), 0o644); err != nil {
			return err
		}
	}
	return os.Remove(savedSysctls)
}

// run runs a command, its output in the error.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
