//go:build tools

// Package tools pins etcd, the store of the Kubernetes API server that the
// injector's end-to-end tests run, at the version that Kubernetes release
// uses. Built by tools/build.
package tools

import _ "go.etcd.io/etcd/server/v3"
