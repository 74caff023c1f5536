// Package api holds what the HTTP and gRPC adapters share: the sidecar's
// metadata and lifecycle hooks. The adapters themselves live in
// internal/api/http and internal/api/grpc.
package api

import "context"

// Metadata is what GET /v1.0/metadata and the gRPC GetMetadata return, in
// Dapr's shape, with the ports this sidecar actually listens on added (port
// 0 flags pick free ones).
type Metadata struct {
	ID                      string            `json:"id"`
	RuntimeVersion          string            `json:"runtimeVersion"`
	EnabledFeatures         []string          `json:"enabledFeatures"`
	Actors                  []any             `json:"actors"`
	Components              []Component       `json:"components"`
	Extended                map[string]string `json:"extended"`
	Subscriptions           []any             `json:"subscriptions"`
	HTTPEndpoints           []any             `json:"httpEndpoints"`
	AppConnectionProperties AppConnection     `json:"appConnectionProperties"`
	Ports                   Ports             `json:"ports"`
}

// Component is a loaded component as metadata lists it.
type Component struct {
	Name         string   `json:"name"`
	Type         string   `json:"type"`
	Version      string   `json:"version"`
	Capabilities []string `json:"capabilities,omitempty"`
}

// AppConnection describes the channel to the app.
type AppConnection struct {
	Port           int    `json:"port,omitempty"`
	Protocol       string `json:"protocol,omitempty"`
	ChannelAddress string `json:"channelAddress,omitempty"`
	MaxConcurrency int    `json:"maxConcurrency,omitempty"`
}

// Ports are the ports the sidecar listens on; 0 means not listening.
type Ports struct {
	HTTP     int `json:"http"`
	GRPC     int `json:"grpc"`
	Internal int `json:"internal"`
	Public   int `json:"public,omitempty"`
	Metrics  int `json:"metrics,omitempty"`
}

// Lifecycle is what the health, metadata and shutdown APIs ask of the sidecar.
type Lifecycle struct {
	// AppReady reports whether the app answers on its port.
	AppReady func(ctx context.Context) bool
	// Metadata returns the current metadata.
	Metadata func() Metadata
	// Shutdown asks the sidecar to stop gracefully. It must not block.
	Shutdown func()
}
