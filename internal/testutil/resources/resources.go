// Package resources writes the Dapr resources that tests, the benchmarks
// and the calculator's local runner give sidecars: a Redis state store
// Component, a pub/sub Component and a Configuration that traces to
// Zipkin.
package resources

import "fmt"

// RedisYAML is a state.redis Component named name for the Redis at addr,
// with more metadata as name, value pairs: what the calculator's runner
// writes for -redis, and what tests give sidecars.
func RedisYAML(name, addr string, metadata ...string) []byte {
	b := fmt.Appendf(nil, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: %q\n", name, addr)
	for i := 0; i+1 < len(metadata); i += 2 {
		b = fmt.Appendf(b, "  - name: %s\n    value: %q\n", metadata[i], metadata[i+1])
	}
	return b
}

// PubSubYAML is a pub/sub Component named name of type typ
// (pubsub.redis, pubsub.in-memory), with metadata as name, value pairs.
func PubSubYAML(name, typ string, metadata ...string) []byte {
	b := fmt.Appendf(nil, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: %s\n  version: v1\n  metadata:", name, typ)
	if len(metadata) == 0 {
		return append(b, " []\n"...)
	}
	b = append(b, '\n')
	for i := 0; i+1 < len(metadata); i += 2 {
		b = fmt.Appendf(b, "  - name: %s\n    value: %q\n", metadata[i], metadata[i+1])
	}
	return b
}

// ZipkinYAML is a Configuration named name that samples every trace and
// sends it to the Zipkin endpoint: what the calculator's runner writes for
// -zipkin, and what tests give sidecars.
func ZipkinYAML(name, endpoint string) []byte {
	return fmt.Appendf(nil, `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: %s
spec:
  tracing:
    samplingRate: "1"
    zipkin:
      endpointAddress: %q
`, name, endpoint)
}
