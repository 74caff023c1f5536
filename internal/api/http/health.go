package httpapi

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/tandem-run/tandem/internal/api"
	"github.com/tandem-run/tandem/internal/apierr"
	"google.golang.org/grpc/codes"
)

// HealthRoutes are the two health routes: all the public port serves, as
// daprd's.
func HealthRoutes(l api.Lifecycle) []Route {
	return []Route{
		{Method: http.MethodGet, Pattern: "/v1.0/healthz", Name: "Healthz", Public: true, Handler: func(w http.ResponseWriter, r *http.Request) {
			if !l.AppReady(r.Context()) {
				apierr.Write(w, apierr.New(apierr.CodeHealthNotReady, http.StatusInternalServerError, codes.Unavailable,
					"the app is not ready: its app port does not answer yet"))
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}},
		{Method: http.MethodGet, Pattern: "/v1.0/healthz/outbound", Name: "HealthzOutbound", Public: true, Handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}},
	}
}

// LifecycleRoutes are HealthRoutes plus metadata (GET, and PUT of a key of
// the extended metadata) and shutdown, for the API port.
func LifecycleRoutes(l api.Lifecycle) []Route {
	return append(HealthRoutes(l),
		Route{Method: http.MethodGet, Pattern: "/v1.0/metadata", Name: "GetMetadata", Handler: func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, l.Metadata())
		}},
		Route{Method: http.MethodPut, Pattern: "/v1.0/metadata/{key}", Name: "PutMetadata", Handler: func(w http.ResponseWriter, r *http.Request) {
			// The body is the value, read to one byte past the bound so
			// that a longer one is refused rather than cut.
			b, err := io.ReadAll(io.LimitReader(r.Body, api.MaxExtendedValueBytes+1))
			if err != nil {
				apierr.Write(w, apierr.New(apierr.CodeMalformedRequest, http.StatusBadRequest, codes.InvalidArgument, "reading the metadata value: %v", err))
				return
			}
			if err := l.SetMetadata(r.PathValue("key"), string(b)); err != nil {
				apierr.Write(w, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}},
		Route{Method: http.MethodPost, Pattern: "/v1.0/shutdown", Name: "Shutdown", Handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
			l.Shutdown()
		}},
	)
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
