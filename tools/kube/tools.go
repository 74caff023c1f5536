//go:build tools

// Package tools pins the Kubernetes control plane the injector's end-to-end
// tests run on loopback: kube-apiserver and kube-controller-manager. Built by
// tools/build.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
