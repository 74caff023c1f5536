package reload

import (
	"cmp"
	"errors"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Status is what the sidecar has in use of each resource, and the latest
// versions it refused, for the metadata API.
type Status struct {
	// HotReload is whether changes are watched and applied.
	HotReload bool `json:"hotReload"`
	// InUse lists the resources in force, each with its version.
	InUse []Resource `json:"inUse"`
	// Rejected lists the versions seen and not put in force, with why;
	// what they would have replaced stays in force.
	Rejected []Rejection `json:"rejected"`
}

// Resource is a resource in force.
type Resource struct {
	Kind string `json:"kind"` // Component, Configuration, Resiliency, Secret
	Name string `json:"name"`
	// Source is where it was read: a file's path, or the object of the
	// API server ("Component default/statestore").
	Source string `json:"source"`
	// Version is the file's SHA-256 ("sha256:<hex>") or the object's
	// resourceVersion.
	Version string `json:"version"`
}

// Rejection is a version of a source that is not in force.
type Rejection struct {
	Kind    string    `json:"kind,omitempty"` // "" when the file could not be read as any
	Name    string    `json:"name,omitempty"`
	Source  string    `json:"source"`
	Version string    `json:"version,omitempty"`
	Error   string    `json:"error"`
	Since   time.Time `json:"since"`
}

func sortResources(rs []Resource) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Kind != rs[j].Kind {
			return rs[i].Kind < rs[j].Kind
		}
		if rs[i].Name != rs[j].Name {
			return rs[i].Name < rs[j].Name
		}
		return rs[i].Source < rs[j].Source
	})
}

// metrics count what the reloader applies and refuses.
type metrics struct {
	reloads  *prometheus.CounterVec
	rejected *prometheus.GaugeVec
	kinds    []string // the values of the kind label
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_resource_reloads_total",
			Help: "Changed resources seen while serving, by kind and outcome: applied, or rejected (it does not parse or validate, or its state store cannot connect; what was in force stays).",
		}, []string{"kind", "outcome"}),
		rejected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_resources_rejected",
			Help: "Resources whose latest version was rejected and is not in force, by kind.",
		}, []string{"kind"}),
	}
	if reg != nil {
		m.reloads = register(reg, m.reloads).(*prometheus.CounterVec)
		m.rejected = register(reg, m.rejected).(*prometheus.GaugeVec)
	}
	return m
}

// add makes kind a value of the kind label, its series there from the
// start.
func (m *metrics) add(kind string) {
	m.kinds = append(m.kinds, kind)
	m.reloads.WithLabelValues(kind, "applied")
	m.reloads.WithLabelValues(kind, "rejected")
	m.rejected.WithLabelValues(kind)
}

// The kinds as Status and the metrics name them; kindFile is a file read
// as no kind (not YAML, or holding none).
const (
	kindComponent     = "Component"
	kindConfiguration = "Configuration"
	kindResiliency    = "Resiliency"
	kindSecret        = "Secret"
	kindSubscription  = "Subscription"
	kindFile          = "file"
)

// register registers c, or returns the collector already registered under
// its name (two sidecars in one process, as in benchmarks).
func register(reg prometheus.Registerer, c prometheus.Collector) prometheus.Collector {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector
		}
	}
	return c
}

// publish makes Status what is in force now.
func (r *Reloader) publish() {
	st := Status{HotReload: r.hot, InUse: []Resource{}, Rejected: []Rejection{}}
	for _, k := range r.kinds {
		k.rec.report(&st)
	}
	r.diff.report(&st)
	if r.secrets != nil {
		st.InUse = append(st.InUse, r.secrets.inUse()...)
	}
	sortResources(st.InUse)
	sort.Slice(st.Rejected, func(i, j int) bool {
		a, b := st.Rejected[i], st.Rejected[j]
		return a.Source < b.Source || a.Source == b.Source && a.Name < b.Name
	})
	counts := map[string]int{}
	for _, rej := range st.Rejected {
		counts[cmp.Or(rej.Kind, kindFile)]++
	}
	for _, k := range r.m.kinds {
		r.m.rejected.WithLabelValues(k).Set(float64(counts[k]))
	}
	r.mu.Lock()
	r.status = st
	r.mu.Unlock()
}
