// Package kubeclient connects the control-plane programs (the injector and
// the dashboard) to the Kubernetes API server with client-go: in a pod
// through its service account, outside one through a kubeconfig file. The
// sidecar does not use it (see internal/kube, which keeps it small).
package kubeclient

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// New returns a client of the API server named by kubeconfig, or of the
// cluster the program runs in when kubeconfig is empty. userAgent names the
// program in the API server's audit log.
func New(kubeconfig, userAgent string) (kubernetes.Interface, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("connecting to the Kubernetes API server (give --kubeconfig outside a cluster): %w", err)
	}
	cfg.UserAgent = userAgent
	return kubernetes.NewForConfig(cfg)
}
