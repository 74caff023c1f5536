package node

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupRoot is where the cgroup hierarchies are mounted; the kubelet
// (cgroupDriver: cgroupfs) puts every pod under kubepods in each.
const cgroupRoot = "/sys/fs/cgroup"

// hardCoded are the paths outside Root that containerd 1.6, libcni and the
// kubelet use whatever they are told; created lists those the node made,
// which the sweep removes.
var (
	hardCoded = []string{"/run/containerd", "/var/lib/cni", "/var/lib/kubelet", "/var/log/containers"}
	created   = filepath.Join(Root, "created")
)

// recordHardCoded notes which hard-coded paths do not exist yet: the node
// will make them, and the sweep removes them.
func recordHardCoded() error {
	var made []string
	for _, p := range hardCoded {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			made = append(made, p)
		}
	}
	return os.WriteFile(created, []byte(strings.Join(made, "\n")), 0o600)
}

// sweep removes everything a node leaves behind, whether its run stopped
// cleanly or was killed: processes, mounts, cgroups, the bridge, iptables
// rules, the route, hard-coded paths it made, kernel settings, Root.
func sweep(logf func(string, ...any)) error {
	var errs []error
	if _, err := os.Stat(Root); err == nil {
		logf("node: sweeping %s", Root)
	}
	killContainers(logf)
	if err := killNodeProcesses(); err != nil {
		errs = append(errs, err)
	}
	if err := unmountUnder(Root); err != nil {
		errs = append(errs, err)
	}
	if err := removeCgroups(); err != nil {
		errs = append(errs, err)
	}
	if linkExists(Bridge) {
		if err := run("ip", "link", "del", Bridge); err != nil {
			errs = append(errs, err)
		}
	}
	// The route goes with the bridge; veths go with their pods' namespaces.
	if err := deleteRules(); err != nil {
		errs = append(errs, err)
	}
	if err := restoreSysctls(); err != nil {
		errs = append(errs, err)
	}
	if b, err := os.ReadFile(created); err == nil {
		for p := range strings.SplitSeq(string(b), "\n") {
			if slices.Contains(hardCoded, p) {
				if err := unmountUnder(p); err != nil {
					errs = append(errs, err)
				}
				if err := os.RemoveAll(p); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if err := os.RemoveAll(Root); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Leftovers lists what of a node is on this machine: nothing after a sweep.
func Leftovers() []string {
	var left []string
	if pids := nodeProcesses(); len(pids) > 0 {
		left = append(left, fmt.Sprintf("processes %v", pids))
	}
	if pids := containerProcesses(); len(pids) > 0 {
		left = append(left, fmt.Sprintf("container processes %v", pids))
	}
	if m := mountsUnder(Root); len(m) > 0 {
		left = append(left, fmt.Sprintf("mounts %v", m))
	}
	if linkExists(Bridge) {
		left = append(left, "bridge "+Bridge)
	}
	if cg := kubepodsCgroups(); len(cg) > 0 {
		left = append(left, fmt.Sprintf("cgroups %v", cg))
	}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"nat", "filter", "mangle"} {
			out, _ := runOutput(cmd, "-w", "-t", table, "-S")
			for line := range strings.SplitSeq(out, "\n") {
				if chain, ok := strings.CutPrefix(line, "-N "); strings.Contains(line, ruleComment) || ok && slices.Contains(kubeletChains, chain) {
					left = append(left, fmt.Sprintf("%s -t %s: %s", cmd, table, line))
				}
			}
		}
	}
	if _, err := os.Stat(Root); err == nil {
		left = append(left, Root)
	}
	return left
}

// nodeProcesses are the processes whose command line names Root: the
// node's programs and containerd's shims.
func nodeProcesses() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(Root)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func killNodeProcesses() error {
	return killUntilGone("node processes", nodeProcesses)
}

// killContainers kills every process in the kubepods cgroups: the pods'
// containers, so that nothing keeps their mounts busy.
func killContainers(logf func(string, ...any)) {
	if pids := containerProcesses(); len(pids) > 0 {
		logf("node: killing %d container processes", len(pids))
		_ = killUntilGone("container processes", containerProcesses)
	}
}

// killUntilGone sends SIGKILL to list's processes until list is empty, for
// up to 20 s.
func killUntilGone(what string, list func() []int) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		pids := list()
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %v survive SIGKILL", what, pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kubepodsCgroups are the kubepods cgroup folders of every hierarchy,
// deepest first.
func kubepodsCgroups() []string {
	var dirs []string
	hierarchies, _ := os.ReadDir(cgroupRoot)
	for _, h := range hierarchies {
		base := filepath.Join(cgroupRoot, h.Name())
		matches, _ := filepath.Glob(filepath.Join(base, "kubepods*"))
		for _, m := range matches {
			_ = filepath.WalkDir(m, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
		}
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return dirs
}

func containerProcesses() []int {
	var pids []int
	for _, d := range kubepodsCgroups() {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if pid, err := strconv.Atoi(sc.Text()); err == nil && !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// removeCgroups removes the kubepods cgroups, deepest first (a cgroup goes
// once it has no process and no child).
func removeCgroups() error {
	var last error
	for range 50 {
		dirs := kubepodsCgroups()
		if len(dirs) == 0 {
			return nil
		}
		last = nil
		for _, d := range dirs {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
				last = fmt.Errorf("rmdir %s: %w", d, err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// mountsUnder are the mount points at or under dir, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var points []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		p := unescapeMount(f[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return points
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder unmounts everything at or under dir (lazily: a mount whose
// last user is gone).
func unmountUnder(dir string) error {
	for range 5 {
		points := mountsUnder(dir)
		if len(points) == 0 {
			return nil
		}
		for _, p := range points {
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
		}
	}
	if left := mountsUnder(dir); len(left) > 0 {
		return fmt.Errorf("mounts under %s survive unmounting: %v", dir, left)
	}
	return nil
}

func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

func runOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	return string(out), err
}
