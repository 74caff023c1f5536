// Package ports holds the sidecar's well-known ports, Dapr's numbers: what
// the sidecar listens on when no flag says otherwise, what the injector
// gives every pod (and tells its apps through DAPR_HTTP_PORT and
// DAPR_GRPC_PORT), and what the kubernetes resolver dials on peers. They are
// defined here once so that the sidecar and the injector cannot disagree.
package ports

const (
	// HTTP is the HTTP API's port (--dapr-http-port).
	HTTP = 3500
	// GRPC is the gRPC API's port (--dapr-grpc-port).
	GRPC = 50001
	// Internal is the sidecar-to-sidecar port (--dapr-internal-grpc-port).
	Internal = 50002
	// Metrics is the Prometheus metrics port (--metrics-port).
	Metrics = 9090
	// Public is the port of the two health routes the injector gives every
	// pod for its probes (--dapr-public-port); a sidecar started without
	// the flag has none.
	Public = 3501
)
