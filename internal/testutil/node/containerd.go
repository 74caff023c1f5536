package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

var (
	containerdDir    = filepath.Join(Root, "containerd")
	containerdSocket = filepath.Join(containerdDir, "containerd.sock")
	cniConfDir       = filepath.Join(Root, "cni", "net.d")
)

// containerdConfig is containerd 1.6's configuration for the node: its own
// root, state and socket; runc with cgroupfs (SystemdCgroup false) and its
// own root; the overlayfs snapshotter; our CNI network; the pause image of
// our own; and restrict_oom_score_adj, without which runc fails here ("can't
// get final child's PID from pipe: EOF": root lacks CAP_SYS_RESOURCE, so
// writing -998 to oom_score_adj is refused).
func containerdConfig(pause string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = %[7]q

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = %[8]q
  conf_dir = %[9]q
  max_conf_num = 1
`, filepath.Join(containerdDir, "root"), filepath.Join(containerdDir, "state"), containerdSocket, containerdSocket+".ttrpc",
		filepath.Join(containerdDir, "opt"), pause, filepath.Join(containerdDir, "runc"), cniBinDir, cniConfDir)
}

// startContainerd writes the CNI network and containerd's configuration,
// starts containerd and imports the images.
func (c *Cluster) startContainerd(ctx context.Context, images []string, pause string) error {
	if err := recordHardCoded(); err != nil {
		return err
	}
	if err := os.MkdirAll(cniConfDir, 0o755); err != nil {
		return err
	}
	network, err := cniNetwork()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cniConfDir, "10-tandem-node.conflist"), network, 0o644); err != nil {
		return err
	}
	config := filepath.Join(containerdDir, "config.toml")
	if err := os.MkdirAll(containerdDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(config, []byte(containerdConfig(pause)), 0o644); err != nil {
		return err
	}
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return err
	}
	c.bins["containerd"] = bin
	p, err := c.start("containerd", nil, "--config", config, "--log-level", "warn")
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := c.ctr(ctx, "version"); err == nil {
			break
		}
		select {
		case <-p.Done():
			return fmt.Errorf("containerd exited while starting:\n%s", c.Output("containerd"))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd does not answer on %s:\n%s", containerdSocket, c.Output("containerd"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	start := time.Now()
	for _, img := range images {
		if err := c.ctr(ctx, "images", "import", img); err != nil {
			return err
		}
	}
	c.logf("node: %d images imported in %s", len(images), time.Since(start).Round(100*time.Millisecond))
	return nil
}

// ctr runs ctr against the node's containerd, in the Kubernetes namespace.
func (c *Cluster) ctr(ctx context.Context, args ...string) error {
	_, err := c.Ctr(ctx, args...)
	return err
}

// Ctr runs ctr against the node's containerd in its Kubernetes namespace
// (k8s.io) and returns its output.
func (c *Cluster) Ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", containerdSocket, "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// PodNetNS is the path of the pod's network namespace (containerd keeps
// them under its state folder), for nsenter --net.
func (c *Cluster) PodNetNS(t testing.TB, p *corev1.Pod) string {
	t.Helper()
	out, err := c.Ctr(context.Background(), "containers", "ls", "-q", `labels."io.kubernetes.pod.uid"==`+string(p.UID)+`,labels."io.cri-containerd.kind"==sandbox`)
	ids := strings.Fields(out)
	if err != nil || len(ids) != 1 {
		t.Fatalf("the sandbox of pod %s: %v %q", p.Name, err, out)
	}
	info, err := c.Ctr(context.Background(), "containers", "info", ids[0])
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Spec struct {
			Linux struct {
				Namespaces []struct{ Type, Path string } `json:"namespaces"`
			} `json:"linux"`
		} `json:"Spec"`
	}
	if err := json.Unmarshal([]byte(info), &spec); err != nil {
		t.Fatalf("ctr containers info: %v", err)
	}
	for _, ns := range spec.Spec.Linux.Namespaces {
		if ns.Type == "network" && ns.Path != "" {
			return ns.Path
		}
	}
	t.Fatalf("pod %s has no network namespace path in %s", p.Name, info)
	return ""
}
