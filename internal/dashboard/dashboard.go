// Package dashboard is the mesh's read-only dashboard: one page and a JSON
// API that show the apps running on this machine, read from the standalone
// registry (pkg/resolver/standalone), with what each sidecar reports of
// itself: its health (GET /v1.0/healthz) and its metadata (GET
// /v1.0/metadata: version, components, subscriptions, the resources in use
// and the changes it refused).
//
// It draws the service map: one edge per caller→callee (and publisher →
// topic → subscriber) with its rate, error rate and latencies over a
// window, from the growth of the sidecars' counters and histograms between
// reads of their metrics kept in memory (metrics.go, scrape.go); or, with a
// trace store, from the client spans of the window read through Jaeger's
// query API or Zipkin's v2 API (servicemap.go, tracestore.go).
//
// In Kubernetes mode (Config.Kube, kube.go) the apps are the pods annotated
// dapr.io/enabled: "true", from a watched cache of pods, and each sidecar is
// read at its pod's IP through its read-only route on the metrics port
// (GET /v1.0/dashboard), which needs no token.
//
// It reads, never writes: it stores nothing on disk, asks each sidecar only
// on the loopback ports the sidecar registered and its metadata names (in
// Kubernetes mode, the pod IP and metrics port the API server reports), and
// the trace store only at the URL
// it was started with, and no route takes an address or a URL from the
// request. It reads no API token: a sidecar that requires one
// is shown as "token required". The page is plain HTML, CSS and JavaScript
// embedded in the binary, with no build step; it builds its DOM with
// textContent only, so every value from a sidecar is shown as text.
package dashboard

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	httpapi "github.com/tandem-run/tandem/internal/api/http"
	"github.com/tandem-run/tandem/pkg/resolver/standalone"
)

//go:embed static
var static embed.FS

// maxMetadataBytes bounds what is read of one sidecar's metadata;
// maxConcurrent the sidecars asked at once.
const (
	maxMetadataBytes = 1 << 20
	maxConcurrent    = 32
)

// Health values of an App.
const (
	Healthy     = "healthy"     // /v1.0/healthz answered 204
	Unhealthy   = "unhealthy"   // the sidecar answers, its app does not
	Unreachable = "unreachable" // the sidecar does not answer
)

// Metadata values of an App: what its metadata route gave.
const (
	MetadataOK            = "ok"
	MetadataTokenRequired = "token required"
	MetadataError         = "error"
)

// Config configures the dashboard.
type Config struct {
	// RegistryDir is the standalone registry folder read on every request.
	RegistryDir string
	// Host is where the sidecars' HTTP API ports are dialled; 127.0.0.1
	// when empty.
	Host string
	// Timeout bounds each request to a sidecar; 2 s when zero.
	Timeout time.Duration
	// Remote serves requests addressed to any host name. Without it only
	// localhost and loopback addresses are served, so a web page whose
	// name resolves to 127.0.0.1 (DNS rebinding) cannot read the API.
	Remote bool
	// JaegerQuery is the base URL of Jaeger's query API the service map
	// reads (such as http://127.0.0.1:16686); no map when empty.
	JaegerQuery string
	// ZipkinQuery is the base URL of Zipkin's v2 API (such as
	// http://127.0.0.1:9411), read instead of JaegerQuery when set.
	ZipkinQuery string
	// Kube, when set, lists the sidecars from the API server instead of
	// the registry: the pods annotated dapr.io/enabled: "true" of
	// Namespace (of every namespace when empty), each read at its pod IP
	// on its metrics port (kube.go). Run keeps the list.
	Kube      kubernetes.Interface
	Namespace string
}

// Dashboard serves the page and its API.
type Dashboard struct {
	cfg         Config
	client      *http.Client
	traceClient *http.Client // the trace store's: a longer bound
	scrapes     scraper
	pods        *pods // the Kubernetes source; nil in standalone mode
}

// New returns a dashboard over cfg.
func New(cfg Config) *Dashboard {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	// An answer is read as is; a redirect would name another URL.
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.JaegerQuery = strings.TrimSuffix(cfg.JaegerQuery, "/")
	cfg.ZipkinQuery = strings.TrimSuffix(cfg.ZipkinQuery, "/")
	// Each sidecar is read every 2 s (health, metadata, metrics): keep a
	// connection to each open between reads, where http.DefaultTransport
	// keeps 100 in all and a page of 200 apps would dial most of its
	// reads anew every refresh.
	sidecars := http.DefaultTransport.(*http.Transport).Clone()
	sidecars.MaxIdleConns = 0 // no bound in all; per sidecar port:
	sidecars.MaxIdleConnsPerHost = 2
	sidecars.IdleConnTimeout = 30 * time.Second
	sidecars.Proxy = nil // the sidecars are reached directly, never through a proxy
	d := &Dashboard{cfg: cfg,
		client:      &http.Client{Timeout: cfg.Timeout, CheckRedirect: noRedirect, Transport: sidecars},
		traceClient: &http.Client{Timeout: 20 * time.Second, CheckRedirect: noRedirect},
		scrapes:     scraper{rings: map[sidecarKey]*ring{}},
	}
	if cfg.Kube != nil {
		d.pods = newPods(cfg.Kube, cfg.Namespace)
	}
	return d
}

// Apps is what GET /api/apps answers.
type Apps struct {
	Registry string `json:"registry"`
	// Kubernetes is what is listed in Kubernetes mode: "all namespaces"
	// or "namespace <name>".
	Kubernetes string    `json:"kubernetes,omitempty"`
	At         time.Time `json:"at"`
	Apps       []App     `json:"apps"`
}

// App is one running sidecar and what it reports.
type App struct {
	AppID     string    `json:"appId"`
	Namespace string    `json:"namespace,omitempty"`
	Pod       string    `json:"pod,omitempty"` // in Kubernetes mode
	PID       int       `json:"pid"`
	HTTPPort  int       `json:"httpPort"`
	GRPCPort  int       `json:"grpcPort"`
	StartedAt time.Time `json:"startedAt"`

	Health      string `json:"health"`                // Healthy, Unhealthy or Unreachable
	HealthError string `json:"healthError,omitempty"` // why not healthy
	Metadata    string `json:"metadata"`              // MetadataOK, MetadataTokenRequired or MetadataError
	MetadataErr string `json:"metadataError,omitempty"`

	// From the metadata, when it could be read.
	RuntimeVersion string         `json:"runtimeVersion,omitempty"`
	Mode           string         `json:"mode,omitempty"`
	AppPort        int            `json:"appPort,omitempty"`
	AppProtocol    string         `json:"appProtocol,omitempty"`
	Components     []Component    `json:"components"`
	Subscriptions  []Subscription `json:"subscriptions"`
	InUse          []Resource     `json:"inUse"`
	Rejected       []Rejection    `json:"rejected"`
	Ports          map[string]int `json:"ports,omitempty"`
	// The sidecar's mutual TLS identity, from its extended metadata
	// (mtlsSpiffeID, mtlsCertExpiry): none when mutual TLS is off.
	SpiffeID   string     `json:"spiffeId,omitempty"`
	CertExpiry *time.Time `json:"certExpiry,omitempty"`
}

// Component is a component a sidecar has loaded.
type Component struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Version string `json:"version"`
}

// Subscription is a subscription a sidecar delivers.
type Subscription struct {
	PubsubName      string `json:"pubsubname"`
	Topic           string `json:"topic"`
	DeadLetterTopic string `json:"deadLetterTopic,omitempty"`
	Type            string `json:"type,omitempty"`
}

// Resource is a resource in force in a sidecar: a Component, its
// Configuration, a Resiliency; with the file it came from.
type Resource struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Version string `json:"version"`
	Source  string `json:"source,omitempty"`
}

// Rejection is a change a sidecar refused, with its reason.
type Rejection struct {
	Kind   string    `json:"kind,omitempty"`
	Name   string    `json:"name,omitempty"`
	Source string    `json:"source"`
	Error  string    `json:"error"`
	Since  time.Time `json:"since"`
}

// metadata is the part of a sidecar's GET /v1.0/metadata read here.
type metadata struct {
	ID                      string         `json:"id"`
	RuntimeVersion          string         `json:"runtimeVersion"`
	Components              []Component    `json:"components"`
	Subscriptions           []Subscription `json:"subscriptions"`
	Mode                    string         `json:"mode"`
	Ports                   map[string]int `json:"ports"`
	AppConnectionProperties struct {
		Port     int    `json:"port"`
		Protocol string `json:"protocol"`
	} `json:"appConnectionProperties"`
	Resources *struct {
		InUse    []Resource  `json:"inUse"`
		Rejected []Rejection `json:"rejected"`
	} `json:"resources"`
	Extended map[string]string `json:"extended"`
}

// Handler serves the page at / and the API at GET /api/apps.
func (d *Dashboard) Handler() http.Handler {
	sub, _ := fs.Sub(static, "static") // a valid name: cannot fail
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServerFS(sub))
	mux.HandleFunc("GET /api/apps", func(w http.ResponseWriter, r *http.Request) {
		apps, err := d.Apps(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(apps)
	})
	mux.HandleFunc("GET /api/map", func(w http.ResponseWriter, r *http.Request) {
		window, err := ParseWindow(r.URL.Query().Get("window"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch src := r.URL.Query().Get("source"); src {
		case "", "metrics":
			if window > MaxMetricsWindow {
				http.Error(w, fmt.Sprintf("window %s: the sidecars' metrics are kept for %s at most (?source=traces reads the trace store)", window, MaxMetricsWindow), http.StatusBadRequest)
				return
			}
			writeTraceAnswer(w, d.MetricsMap(r.Context(), window), nil)
		case "traces":
			m, err := d.ServiceMap(r.Context(), window)
			writeTraceAnswer(w, m, err)
		default:
			http.Error(w, fmt.Sprintf("source %q: want metrics (the default) or traces", src), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("GET /api/traces", func(w http.ResponseWriter, r *http.Request) {
		q, err := ParseTraceQuery(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		list, err := d.Traces(r.Context(), q)
		writeTraceAnswer(w, list, err)
	})
	mux.HandleFunc("GET /api/traces/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !traceID.MatchString(id) {
			http.Error(w, fmt.Sprintf("trace id %q: want 16 or 32 lower-case hex digits", id), http.StatusBadRequest)
			return
		}
		spans, err := d.Trace(r.Context(), id)
		writeTraceAnswer(w, spans, err)
	})
	return d.secure(mux)
}

// writeTraceAnswer writes v, or err: a 404 without a trace store, a 502
// when it does not answer.
func writeTraceAnswer(w http.ResponseWriter, v any, err error) {
	switch {
	case errors.Is(err, errNoTraceStore):
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// secure sets the headers that keep the page to its own scripts and data.
// Without Config.Remote it refuses a request for a host name other than
// localhost or a loopback address.
func (d *Dashboard) secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		if !d.cfg.Remote && !LoopbackHost(r.Host) {
			http.Error(w, fmt.Sprintf("host %q is not served: the dashboard answers requests for localhost or a loopback address only (start it with --allow-remote to serve others)", r.Host), http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Apps reads the registry and asks every sidecar in it, concurrently.
func (d *Dashboard) Apps(ctx context.Context) (Apps, error) {
	entries, err := d.targets()
	if err != nil {
		return Apps{}, err
	}
	out := Apps{Registry: d.cfg.RegistryDir, At: time.Now().UTC(), Apps: make([]App, len(entries))}
	if d.pods != nil {
		out.Registry, out.Kubernetes = "", d.pods.scope
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxConcurrent)
	for i, e := range entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if e.pod != nil {
				out.Apps[i] = d.podApp(ctx, e)
			} else {
				out.Apps[i] = d.app(ctx, e.Entry)
			}
		}()
	}
	wg.Wait()
	sort.Slice(out.Apps, func(i, j int) bool {
		a, b := out.Apps[i], out.Apps[j]
		if a.AppID != b.AppID {
			return a.AppID < b.AppID
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Pod != b.Pod {
			return a.Pod < b.Pod
		}
		return a.PID < b.PID
	})
	return out, nil
}

func (d *Dashboard) app(ctx context.Context, e standalone.Entry) App {
	a := App{
		AppID: e.AppID, Namespace: e.Namespace, PID: e.PID,
		HTTPPort: e.HTTPPort, GRPCPort: e.GRPCPort, StartedAt: e.StartedAt,
		Components: []Component{}, Subscriptions: []Subscription{},
		InUse: []Resource{}, Rejected: []Rejection{},
	}
	if e.HTTPPort <= 0 || e.HTTPPort > 65535 {
		a.Health, a.HealthError = Unreachable, "the sidecar registered no HTTP API port"
		a.Metadata, a.MetadataErr = MetadataError, a.HealthError
		return a
	}
	base := "http://" + net.JoinHostPort(d.cfg.Host, strconv.Itoa(e.HTTPPort))
	a.Health, a.HealthError = d.health(ctx, base)
	if e.MetricsPort > 0 && e.MetricsPort <= 65535 {
		// The read-only route on the metrics port needs no token.
		route := "http://" + net.JoinHostPort(d.cfg.Host, strconv.Itoa(e.MetricsPort)) + httpapi.DashboardPath
		if a.Metadata, a.MetadataErr = d.metadataAt(ctx, route, &a); a.Metadata == MetadataOK {
			return a
		}
		// A sidecar older than the route: its metadata API, as below.
	}
	a.Metadata, a.MetadataErr = d.metadata(ctx, base, &a)
	return a
}

// metadataAt reads a sidecar's read-only dashboard route at url.
func (d *Dashboard) metadataAt(ctx context.Context, url string, a *App) (string, string) {
	resp, body, err := d.get(ctx, url, maxMetadataBytes)
	switch {
	case err != nil:
		return MetadataError, err.Error()
	case resp.StatusCode != http.StatusOK:
		return MetadataError, "GET " + httpapi.DashboardPath + " answered " + resp.Status
	}
	var m metadata
	if err := json.Unmarshal(body, &m); err != nil {
		return MetadataError, "GET " + httpapi.DashboardPath + ": " + err.Error()
	}
	if m.ID != a.AppID {
		return MetadataError, fmt.Sprintf("the sidecar's metrics port says it is app %q, not %q", m.ID, a.AppID)
	}
	return d.fill(a, m), ""
}

func (d *Dashboard) health(ctx context.Context, base string) (string, string) {
	resp, body, err := d.get(ctx, base+"/v1.0/healthz", 4096)
	switch {
	case err != nil:
		return Unreachable, err.Error()
	case resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusOK:
		return Healthy, ""
	default:
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			return Unhealthy, e.Message
		}
		return Unhealthy, resp.Status
	}
}

func (d *Dashboard) metadata(ctx context.Context, base string, a *App) (string, string) {
	resp, body, err := d.get(ctx, base+"/v1.0/metadata", maxMetadataBytes)
	switch {
	case err != nil:
		return MetadataError, err.Error()
	case resp.StatusCode == http.StatusUnauthorized:
		return MetadataTokenRequired, "the sidecar requires an API token; the dashboard reads none"
	case resp.StatusCode != http.StatusOK:
		return MetadataError, "GET /v1.0/metadata answered " + resp.Status
	}
	var m metadata
	if err := json.Unmarshal(body, &m); err != nil {
		return MetadataError, "GET /v1.0/metadata: " + err.Error()
	}
	if m.ID != a.AppID {
		return MetadataError, fmt.Sprintf("the sidecar on port %d says it is app %q, not %q", a.HTTPPort, m.ID, a.AppID)
	}
	return d.fill(a, m), ""
}

// fill puts what a is shown of m in a.
func (d *Dashboard) fill(a *App, m metadata) string {
	a.RuntimeVersion, a.Mode, a.Ports = m.RuntimeVersion, m.Mode, m.Ports
	a.AppPort, a.AppProtocol = m.AppConnectionProperties.Port, m.AppConnectionProperties.Protocol
	if m.Components != nil {
		a.Components = m.Components
	}
	if m.Subscriptions != nil {
		a.Subscriptions = m.Subscriptions
	}
	a.SpiffeID = m.Extended["mtlsSpiffeID"]
	if t, err := time.Parse(time.RFC3339, m.Extended["mtlsCertExpiry"]); err == nil {
		a.CertExpiry = &t
	}
	if m.Resources != nil {
		if m.Resources.InUse != nil {
			a.InUse = m.Resources.InUse
		}
		if m.Resources.Rejected != nil {
			a.Rejected = m.Resources.Rejected
		}
	}
	if a.HTTPPort == 0 {
		a.HTTPPort, a.GRPCPort = m.Ports["http"], m.Ports["grpc"]
	}
	return MetadataOK
}

// get reads url's answer, at most limit bytes of it.
// The sidecar is sent a W3C trace context whose sampled flag is off: its
// sampler follows the parent's decision, so the dashboard's polling puts
// no trace in the trace store.
func (d *Dashboard) get(ctx context.Context, url string, limit int64) (*http.Response, []byte, error) {
	return d.getWith(ctx, d.client, url, limit, http.Header{"Traceparent": {unsampled()}})
}

// unsampled is a traceparent with new ids and the sampled flag off.
func unsampled() string {
	var b [24]byte
	_, _ = rand.Read(b[:]) // never fails
	b[0] |= 1              // ids must not be all zeros
	b[16] |= 1
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-00"
}

// getWith is get with client.
func (d *Dashboard) getWith(ctx context.Context, client *http.Client, url string, limit int64, h http.Header) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, err
	}
	if int64(len(b)) > limit {
		return nil, nil, errors.New("the answer is larger than " + strconv.FormatInt(limit, 10) + " bytes")
	}
	return resp, b, nil
}

// LoopbackHost reports whether hostport names this machine's loopback:
// localhost or a loopback IP address, with or without a port.
func LoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
