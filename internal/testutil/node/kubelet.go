package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var kubeletDir = filepath.Join(Root, "kubelet")

// kubeletConfig is the kubelet's configuration: cgroupfs on cgroup v1
// (which it refuses unless failCgroupV1 is false), no swap check, no
// read-only port, no iptables chains of its own, the cluster DNS on the
// bridge address, eviction thresholds for a small disk, and clients
// authenticated by the node's CA and authorized by the API server.
func kubeletConfig(p *pki, healthzPort string) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[2]s
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %[3]s
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
protectKernelDefaults: false
resolvConf: ""
clusterDNS: [%[1]s]
clusterDomain: cluster.local
containerRuntimeEndpoint: unix://%[4]s
podLogsDir: %[5]s
staticPodPath: ""
serializeImagePulls: false
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 10s
fileCheckFrequency: 10s
shutdownGracePeriod: 0s
`, BridgeIP, healthzPort, p.CA, containerdSocket, filepath.Join(kubeletDir, "pod-logs"))
}

// startKubelet starts the kubelet and waits until its node is Ready.
func (c *Cluster) startKubelet(ctx context.Context, p *pki) error {
	if err := os.MkdirAll(kubeletDir, 0o755); err != nil {
		return err
	}
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	config := filepath.Join(kubeletDir, "config.yaml")
	if err := os.WriteFile(config, []byte(kubeletConfig(p, ports[0])), 0o600); err != nil {
		return err
	}
	kubeconfig := filepath.Join(kubeletDir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, p.CA, kubeletToken); err != nil {
		return err
	}
	kp, err := c.start("kubelet", nil,
		"--config", config,
		"--kubeconfig", kubeconfig,
		"--root-dir", filepath.Join(kubeletDir, "root"),
		"--cert-dir", filepath.Join(kubeletDir, "pki"),
		"--hostname-override", NodeName,
		"--node-ip", BridgeIP,
		"--v", "1",
	)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err == nil {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					return nil
				}
			}
		}
		select {
		case <-kp.Done():
			return fmt.Errorf("kubelet exited while starting:\n%s", c.Output("kubelet"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s not Ready after 2 minutes:\n%s", NodeName, c.Output("kubelet"))
		}
	}
}
