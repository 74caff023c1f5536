//go:build tools

// Package tools pins CoreDNS, whose kubernetes plugin answers the DNS names
// of headless Services in the kubernetes-mode end-to-end test, as it does in
// a cluster. Built by tools/build.
package tools

import _ "github.com/coredns/coredns"
