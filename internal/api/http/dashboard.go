package httpapi

import (
	"net/http"

	"github.com/tandem-run/tandem/internal/api"
)

// DashboardPath is the sidecar's read-only route for the dashboard, served
// on its metrics port beside GET /metrics.
const DashboardPath = "/v1.0/dashboard"

// Dashboard answers GET DashboardPath: the metadata's dashboard view
// (api.Metadata.Dashboard), which holds no secret, so it asks for no API
// token; the metrics port it is served on serves no other route but
// /metrics.
func Dashboard(l api.Lifecycle) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, l.Metadata().Dashboard(l.AppReady(r.Context())))
	})
}
