package httpapi

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/tandem-run/tandem/internal/apierr"
	"google.golang.org/grpc/codes"
)

// Metadata is the body of GET /v1.0/metadata, in Dapr's shape, with the
// ports this sidecar actually listens on added (port 0 flags pick free ones).
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

// Lifecycle is what the health, metadata and shutdown routes ask of the sidecar.
type Lifecycle struct {
	// AppReady reports whether the app answers on its port.
	AppReady func(ctx context.Context) bool
	// Metadata returns the current metadata.
	Metadata func() Metadata
	// Shutdown asks the sidecar to stop gracefully. It must not block.
	Shutdown func()
}

// HealthRoutes are the routes the public port serves too: health and metadata.
func HealthRoutes(l Lifecycle) []Route {
	return []Route{
		{Method: http.MethodGet, Pattern: "/v1.0/healthz", Name: "Healthz", Handler: func(w http.ResponseWriter, r *http.Request) {
			if !l.AppReady(r.Context()) {
				apierr.Write(w, apierr.New(apierr.CodeHealthNotReady, http.StatusInternalServerError, codes.Unavailable,
					"the app is not ready: its app port does not answer yet"))
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}},
		{Method: http.MethodGet, Pattern: "/v1.0/healthz/outbound", Name: "HealthzOutbound", Handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}},
		{Method: http.MethodGet, Pattern: "/v1.0/metadata", Name: "GetMetadata", Handler: func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, l.Metadata())
		}},
	}
}

// LifecycleRoutes are HealthRoutes plus shutdown, for the API port.
func LifecycleRoutes(l Lifecycle) []Route {
	return append(HealthRoutes(l), Route{
		Method: http.MethodPost, Pattern: "/v1.0/shutdown", Name: "Shutdown",
		Handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
			l.Shutdown()
		},
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		apierr.Write(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
