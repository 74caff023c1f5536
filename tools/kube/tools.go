//go:build tools

// Package tools pins the Kubernetes programs the tests run: kube-apiserver
// and kube-controller-manager (the injector's end-to-end tests on loopback),
// and kube-scheduler and the kubelet (the real node of tests/node). Built by
// tools/build.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
