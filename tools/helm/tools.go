//go:build tools

// Package tools pins Helm, which lints and renders the chart in the tests
// and installs it into the test control plane. Built by tools/build.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
