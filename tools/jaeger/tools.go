//go:build tools

// Package tools pins Jaeger all-in-one, the trace collector the end-to-end
// tracing test sends spans to (on its Zipkin receiver) and reads them back
// from (its query API). Built by tools/build.
package tools

import _ "github.com/jaegertracing/jaeger/cmd/all-in-one"
