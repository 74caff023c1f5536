// Package api holds what the HTTP and gRPC adapters share: the sidecar's
// metadata and lifecycle hooks, and the publish API's checks and envelope
// (Publisher). The adapters themselves live in internal/api/http and
// internal/api/grpc.
package api

import "context"

// Metadata is what GET /v1.0/metadata and the gRPC GetMetadata return, in
// daprd's shape and with its field names; what this sidecar adds is under
// names daprd does not use (ports, mode, namespace, pid).
type Metadata struct {
	ID              string      `json:"id"`
	RuntimeVersion  string      `json:"runtimeVersion"`
	EnabledFeatures []string    `json:"enabledFeatures"`
	Actors          []any       `json:"actors"`
	Components      []Component `json:"components"`
	// Extended is what apps and the Dapr CLI set (PUT
	// /v1.0/metadata/{key}, SetMetadata), and daprRuntimeVersion.
	Extended                map[string]string `json:"extended"`
	Subscriptions           []Subscription    `json:"subscriptions"`
	HTTPEndpoints           []any             `json:"httpEndpoints"`
	AppConnectionProperties AppConnection     `json:"appConnectionProperties"`
	ActorRuntime            ActorRuntime      `json:"actorRuntime"`

	// Ports are the ports the sidecar listens on (port 0 flags pick free
	// ones).
	Ports     Ports  `json:"ports"`
	Mode      string `json:"mode"`                // standalone or kubernetes
	Namespace string `json:"namespace,omitempty"` // kubernetes mode
	PID       int    `json:"pid"`                 // the sidecar's process id
	// Resources is what is in force of each resource (Component,
	// Configuration, Resiliency, Secret) with its version, and the
	// versions refused (reload.Status).
	Resources any `json:"resources,omitempty"`
}

// ActorRuntime is daprd's actorRuntime: this sidecar has no actors, so its
// status is always DISABLED.
type ActorRuntime struct {
	RuntimeStatus string `json:"runtimeStatus"`
	HostReady     bool   `json:"hostReady"`
	Placement     string `json:"placement,omitempty"`
}

// ActorsDisabled is the ActorRuntime of a sidecar without actors.
var ActorsDisabled = ActorRuntime{RuntimeStatus: "DISABLED"}

// Component is a loaded component as metadata lists it.
type Component struct {
	Name         string   `json:"name"`
	Type         string   `json:"type"`
	Version      string   `json:"version"`
	Capabilities []string `json:"capabilities,omitempty"`
}

// Subscription is one of the app's pub/sub subscriptions as metadata lists
// it, in daprd's shape.
type Subscription struct {
	PubsubName      string             `json:"pubsubname"`
	Topic           string             `json:"topic"`
	Metadata        map[string]string  `json:"metadata,omitempty"`
	Rules           []SubscriptionRule `json:"rules,omitempty"`
	DeadLetterTopic string             `json:"deadLetterTopic"`
	// Type is DECLARATIVE (a Subscription resource) or PROGRAMMATIC (the
	// app's own).
	Type string `json:"type"`
}

// SubscriptionRule is a routing rule of a Subscription: an event its match
// holds for goes to path; no match is the default route.
type SubscriptionRule struct {
	Match string `json:"match,omitempty"`
	Path  string `json:"path"`
}

// AppConnection describes the channel to the app.
type AppConnection struct {
	Port           int        `json:"port,omitempty"`
	Protocol       string     `json:"protocol,omitempty"`
	ChannelAddress string     `json:"channelAddress,omitempty"`
	MaxConcurrency int        `json:"maxConcurrency,omitempty"`
	Health         *AppHealth `json:"health,omitempty"`
}

// AppHealth is how the app's health is checked, when it is, as daprd shows
// it: durations as Go writes them ("5s", "500ms").
type AppHealth struct {
	HealthCheckPath     string `json:"healthCheckPath,omitempty"` // HTTP apps
	HealthProbeInterval string `json:"healthProbeInterval,omitempty"`
	HealthProbeTimeout  string `json:"healthProbeTimeout,omitempty"`
	HealthThreshold     int    `json:"healthThreshold,omitempty"`
}

// Ports are the ports the sidecar listens on; 0 means not listening.
type Ports struct {
	HTTP     int `json:"http"`
	GRPC     int `json:"grpc"`
	Internal int `json:"internal"`
	Public   int `json:"public,omitempty"`
	Metrics  int `json:"metrics,omitempty"`
	Profile  int `json:"profile,omitempty"` // pprof (--enable-profiling)
}

// Lifecycle is what the health, metadata and shutdown APIs ask of the sidecar.
type Lifecycle struct {
	// AppReady reports whether the app answers on its port.
	AppReady func(ctx context.Context) bool
	// Metadata returns the current metadata.
	Metadata func() Metadata
	// SetMetadata sets a key of the extended metadata; its errors are
	// *apierr.Error values (see Extended.Set).
	SetMetadata func(key, value string) error
	// Shutdown asks the sidecar to stop gracefully. It must not block.
	Shutdown func()
}
