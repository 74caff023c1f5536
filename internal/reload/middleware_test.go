package reload

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/middleware"
)

// rateLimitYAML is a middleware.http.ratelimit Component named name, with
// metadata as name, value pairs.
func rateLimitYAML(name string, md ...string) []byte {
	b := fmt.Appendf(nil, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: middleware.http.ratelimit\n  version: v1\n  metadata:\n", name)
	for i := 0; i+1 < len(md); i += 2 {
		b = fmt.Appendf(b, "  - name: %s\n    value: %q\n", md[i], md[i+1])
	}
	return b
}

// pipelineConf is a Configuration whose httpPipeline names api and whose
// appHttpPipeline names app (each "": none).
func pipelineConf(api, app string) []byte {
	b := []byte("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: appconfig\nspec:\n")
	if api != "" {
		b = fmt.Appendf(b, "  httpPipeline:\n    handlers:\n    - name: %s\n      type: middleware.http.ratelimit\n", api)
	}
	if app != "" {
		b = fmt.Appendf(b, "  appHttpPipeline:\n    handlers:\n    - name: %s\n      type: middleware.http.ratelimit\n", app)
	}
	return b
}

// admitted is how many of n calls from one new client the pipeline w
// lets through.
func admitted(sw *middleware.Switch, w middleware.Which, n int) int {
	h := sw.HTTP(w, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	client := fmt.Sprintf("10.9.%d.%d:1", clients/250, clients%250)
	clients++
	ok := 0
	for range n {
		r := httptest.NewRequest("GET", "/v1.0/x", nil)
		r.RemoteAddr = client
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code == 200 {
			ok++
		}
	}
	return ok
}

var clients int

func pipelineNames(sw *middleware.Switch, w middleware.Which) string {
	var names []string
	for _, h := range sw.Pipeline(w) {
		names = append(names, h.Name)
	}
	return strings.Join(names, ",")
}

// The pipelines are built of the middleware Components in force and put in
// force at start; a changed Component is built again and the pipelines
// follow; a Configuration naming a missing Component is refused naming the
// field, and a Component the pipelines need removed leaves those in force
// until it is back.
func TestMiddlewarePipelines(t *testing.T) {
	dir := t.TempDir()
	comp := filepath.Join(dir, "limit.yaml")
	save(t, comp, rateLimitYAML("limit", "maxRequestsPerSecond", "0.001", "burst", "2"))
	save(t, filepath.Join(dir, "other.yaml"), rateLimitYAML("other", "maxRequestsPerSecond", "0.001", "burst", "5"))
	confPath := filepath.Join(t.TempDir(), "config.yaml")
	save(t, confPath, pipelineConf("limit", ""))
	g := start(t, Sources{Dirs: []string{dir}, ConfigFile: confPath})
	if got := pipelineNames(g.mw, middleware.API); got != "limit" || len(g.mw.Pipeline(middleware.App)) != 0 {
		t.Fatalf("pipelines at start: %q, app %d", got, len(g.mw.Pipeline(middleware.App)))
	}
	if cs := g.mw.Components(); len(cs) != 2 || cs[0] != (middleware.Component{Name: "limit", Type: middleware.TypeRateLimit}) || cs[1].Name != "other" {
		t.Fatalf("components in force %+v", cs)
	}
	if n := admitted(g.mw, middleware.API, 5); n != 2 {
		t.Fatalf("burst 2: %d of 5 admitted", n)
	}

	// The limit changed: built again, in force.
	save(t, comp, rateLimitYAML("limit", "maxRequestsPerSecond", "0.001", "burst", "3"))
	eventually(t, "the new burst in force", func() bool { return admitted(g.mw, middleware.API, 5) == 3 })

	// Both pipelines, from the Configuration.
	save(t, confPath, pipelineConf("other", "limit"))
	eventually(t, "the pipelines switched", func() bool {
		return pipelineNames(g.mw, middleware.API) == "other" && pipelineNames(g.mw, middleware.App) == "limit"
	})
	if n := admitted(g.mw, middleware.App, 5); n != 3 {
		t.Fatalf("app pipeline: %d of 5 admitted", n)
	}

	// A Configuration naming a Component that is not there is refused.
	save(t, confPath, pipelineConf("limit", "nope"))
	eventually(t, "the Configuration refused", func() bool {
		r, _ := g.rejected(confPath)
		return strings.Contains(r.Error, `spec.appHttpPipeline.handlers[0].name: no Component "nope" applies to this app`)
	})
	if pipelineNames(g.mw, middleware.API) != "other" {
		t.Fatalf("a refused Configuration changed the pipelines")
	}

	// The Component it named arrives: the refused Configuration is taken
	// without being saved again.
	save(t, confPath, pipelineConf("third", "limit"))
	eventually(t, "the Configuration refused", func() bool {
		r, _ := g.rejected(confPath)
		return strings.Contains(r.Error, `spec.httpPipeline.handlers[0].name: no Component "third"`)
	})
	save(t, filepath.Join(dir, "third.yaml"), rateLimitYAML("third", "maxRequestsPerSecond", "0.001", "burst", "4"))
	eventually(t, "the Configuration taken once its Component is there", func() bool {
		return pipelineNames(g.mw, middleware.API) == "third"
	})
	if n := admitted(g.mw, middleware.API, 6); n != 4 {
		t.Fatalf("third: %d of 6 admitted", n)
	}

	// The Component a pipeline needs goes: the pipelines in force stay,
	// and Status says why; back, and they are in force again.
	save(t, confPath, pipelineConf("other", "limit"))
	eventually(t, "the Configuration back", func() bool { _, ok := g.rejected(confPath); return !ok })
	if err := os.Remove(comp); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the pipelines refused", func() bool {
		for _, r := range g.r.Status().Rejected {
			if r.Kind == kindConfiguration && strings.Contains(r.Error, `spec.appHttpPipeline.handlers[0].name: no middleware Component "limit" is in force`) {
				return true
			}
		}
		return false
	})
	if pipelineNames(g.mw, middleware.App) != "limit" || admitted(g.mw, middleware.App, 5) != 3 {
		t.Fatalf("the pipelines in force changed")
	}
	save(t, comp, rateLimitYAML("limit", "maxRequestsPerSecond", "0.001", "burst", "1"))
	eventually(t, "the pipelines in force again", func() bool { return admitted(g.mw, middleware.App, 5) == 1 })
	if len(g.r.Status().Rejected) != 0 {
		t.Fatalf("still rejected: %+v", g.r.Status().Rejected)
	}
}

// At start, a pipeline naming a missing Component, or a Component of
// another type, and a middleware Component of an unknown type or with bad
// metadata, stop the sidecar with an error naming the field.
func TestMiddlewareLoadRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		comp []byte
		conf []byte
		want string
	}{
		"missing":      {rateLimitYAML("limit"), pipelineConf("nope", ""), `spec.httpPipeline.handlers[0].name: no Component "nope" applies to this app`},
		"other type":   {memoryYAML("limit"), pipelineConf("", "limit"), `spec.appHttpPipeline.handlers[0].type "middleware.http.ratelimit": Component "limit" is of type "state.in-memory"`},
		"unknown type": {[]byte(strings.Replace(string(rateLimitYAML("limit")), "ratelimit", "ratelimiter", 1)), pipelineConf("", ""), `spec.type "middleware.http.ratelimiter" is not supported`},
		"bad value":    {rateLimitYAML("limit", "maxRequestsPerSecond", "lots"), pipelineConf("", ""), `maxRequestsPerSecond "lots"`},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			save(t, filepath.Join(dir, "c.yaml"), tc.comp)
			confPath := filepath.Join(t.TempDir(), "config.yaml")
			save(t, confPath, tc.conf)
			_, err := Load(context.Background(), Sources{AppID: "front", Dirs: []string{dir}, ConfigFile: confPath})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
