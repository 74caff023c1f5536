// Package reload keeps a sidecar's resources (Components, its
// Configuration, Resiliency) in step with where they are read from while it
// serves: in standalone mode the --resources-path folders and the --config
// file, polled, each file taken once it reads the same twice in a row (on
// its own: a file that never settles holds back no other); in kubernetes
// mode also the API server's objects, watched, and the Secrets that
// Components read, polled.
//
// A change is put in force only once it is known to work, so a bad change
// never takes effect:
//   - a source (a file, an object) whose new version does not parse or
//     validate is refused whole; the version in force stays. The refusal
//     is logged with the source and the field, counted in
//     tandem_resource_reloads_total{outcome="rejected"}, and listed by
//     Status until a new version replaces it;
//   - a file that is not a regular file (a named pipe, a device), or is
//     larger than Sources.MaxFileSize, is refused the same way, on its
//     own: it is never waited on nor read whole, and the other files'
//     changes apply;
//   - a new or changed state store or pub/sub broker is built and must
//     answer (state.Pinger, pubsub.Pinger) before it takes calls; until it
//     does the one it replaces keeps serving (or, for a new name, there is
//     none), and it is tried again every Sources.Resync. Calls in flight on
//     a replaced store or broker finish on it; a removed store answers
//     ERR_STATE_STORE_NOT_FOUND from then on, a removed pub/sub
//     ERR_PUBSUB_NOT_FOUND;
//   - tracing, access control and resiliency policies switch whole, for
//     the calls that start after the change.
//
// At start (Load, Apply) the rules are the sidecar's as before: any error
// stops it, except a store or broker whose Component sets
// spec.ignoreErrors, and neither is pinged (they connect on first use).
//
// Inside, the loaders (pollFiles; the API server's watches) send what each
// origin of sources holds. The differ (sources) knows which version of each
// source is in force and which were refused, and takes a new version
// through every kind that reads its origin (newKinds): each reconciler
// stages its part of the version, then all commit, or all drop it. The
// reconcilers then make their targets match what is in force: the
// Components' (by type: the state stores, the pub/sub brokers), the
// Resiliency resources' and the Configuration's.
package reload

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-run/tandem/internal/acl"
	"github.com/tandem-run/tandem/internal/config"
	"github.com/tandem-run/tandem/internal/kube"
	"github.com/tandem-run/tandem/internal/middleware"
	"github.com/tandem-run/tandem/internal/resiliency"
	"github.com/tandem-run/tandem/internal/telemetry"
	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/state"
)

// Sources says where the resources are read from.
type Sources struct {
	AppID string
	// Namespace is the pod's in kubernetes mode, "" in standalone mode.
	Namespace string
	// PodName is the pod's name (POD_NAME), which pub/sub metadata may
	// name ({podName}); "" when unknown.
	PodName string
	// Dirs are the --resources-path folders: Components and Resiliency.
	Dirs []string
	// ConfigFile is the --config file (standalone mode).
	ConfigFile string
	// MaxFileSize is the most read of a file of Dirs or of ConfigFile
	// (--resources-max-file-size; 0: DefaultMaxFileSize). Only regular
	// files, or links to them, are read.
	MaxFileSize int64
	// Kube reads the namespace's objects (kubernetes mode); nil in
	// standalone mode.
	Kube *kube.Client
	// ConfigName is the Configuration --config names (kubernetes mode).
	ConfigName string
	// DefaultStore adds the embedded in-memory store "statestore" when no
	// state store Component applies at start (standalone mode). It stays
	// until a Component of that name replaces it; it never comes back.
	DefaultStore bool

	Logger *slog.Logger
	// ComponentLogger is where the components put in force say what they
	// see while serving (a pub/sub broker's Redis lost and back); nil:
	// nowhere.
	ComponentLogger *slog.Logger
	Registerer      prometheus.Registerer // nil: metrics not registered

	// How often files are read (default 500ms), a store that could not
	// connect is tried again (5s), a store's first answer is waited for
	// (5s), and the Secrets that Components read are read again (30s).
	Poll, Resync, PingTimeout, SecretPoll time.Duration
}

// Targets are what the resources are put in force on.
type Targets struct {
	State  *state.Service
	PubSub *pubsub.Service
	// Tracing is made from Configuration's settings; Run needs it made
	// with telemetry.Options.Reloadable.
	Tracing    *telemetry.Tracing
	ACL        *acl.Switch
	Resiliency *resiliency.Switch
	// Subscriptions takes the declared subscriptions; nil: no app.
	Subscriptions Declarer
	// Middleware takes the pipelines of the Configuration; nil: a
	// Configuration with middleware, or middleware Components, stop the
	// sidecar at start.
	Middleware *middleware.Switch
}

// origin is a set of sources read together: the files of the
// --resources-path folders, the --config file, or the API server's objects
// of a kind. Its name lists its own errors (it could not be read).
type origin string

const (
	originFiles      origin = "--resources-path"
	originConfigFile origin = "--config"
)

// key is how an origin's own error is listed.
func (o origin) key() string { return string(o) }

// update is what an origin holds now, or why it could not be read.
type update struct {
	origin origin
	docs   map[string]doc
	errs   map[string]error // by key: sources that could not be read; the version in force of each stays
	err    error            // the origin could not be read: nothing changes
}

// Reloader reads the resources, puts them in force, and then keeps them in
// step with their sources (Run).
type Reloader struct {
	src Sources
	log *slog.Logger
	m   *metrics

	// Owned by the goroutine of Load, Apply, then Run.
	kinds   []kind
	diff    *sources
	comps   *componentKind
	conf    *configurationKind
	secrets *secretCache // kubernetes mode
	watched []watched    // the lists at start, watched on from
	hot     bool

	mu     sync.Mutex
	status Status
}

// Load reads every source and checks what it holds, as the sidecar does at
// start: any error is returned. Nothing is put in force yet (Apply).
func Load(ctx context.Context, src Sources) (*Reloader, error) {
	src.Logger = cmp.Or(src.Logger, slog.New(slog.DiscardHandler))
	src.Poll = cmp.Or(src.Poll, 500*time.Millisecond)
	src.Resync = cmp.Or(src.Resync, 5*time.Second)
	src.PingTimeout = cmp.Or(src.PingTimeout, 5*time.Second)
	src.SecretPoll = cmp.Or(src.SecretPoll, 30*time.Second)
	src.MaxFileSize = cmp.Or(src.MaxFileSize, DefaultMaxFileSize)
	r := &Reloader{src: src, log: src.Logger}
	if src.Kube != nil {
		r.secrets = newSecretCache(src.Kube)
	}
	r.m = newMetrics(src.Registerer)
	r.kinds = r.newKinds(src)
	for _, k := range r.kinds {
		r.m.add(k.rec.kind())
	}
	r.m.add(kindFile)
	r.diff = newSources(readers(r.kinds, src.ConfigName), r.m, r.log)
	files, err := readDirs(src.Dirs, src.MaxFileSize)
	if err != nil {
		return nil, err
	}
	docs := map[string]doc{}
	for _, key := range slices.Sorted(maps.Keys(files)) {
		if err := files[key].err; err != nil {
			return nil, err
		}
		docs[key] = files[key].doc
	}
	if err := r.diff.load(ctx, originFiles, docs); err != nil {
		return nil, err
	}
	if src.ConfigFile != "" {
		d, err := fileDoc(src.ConfigFile, src.MaxFileSize)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		if err := r.diff.load(ctx, originConfigFile, map[string]doc{d.key: d}); err != nil {
			return nil, err
		}
	}
	if src.Kube != nil {
		if err := r.loadKube(ctx); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Configuration is the Configuration in force; nil: none.
func (r *Reloader) Configuration() *config.Configuration { return r.conf.current() }

// Apply puts what Load read in force on tg: the state stores and pub/sub
// brokers (not pinged: they connect on first use), access control and the
// resiliency policies.
// Tracing was made from Configuration's settings by the caller.
func (r *Reloader) Apply(ctx context.Context, tg Targets) error {
	for _, k := range r.kinds {
		if err := k.rec.start(ctx, tg); err != nil {
			return err
		}
	}
	r.publish()
	return nil
}

// Run watches the sources and puts their changes in force until ctx ends.
func (r *Reloader) Run(ctx context.Context) error {
	r.hot = true
	r.publish()
	updates := make(chan update)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	configFile := r.src.ConfigFile
	if len(r.src.Dirs) > 0 || configFile != "" {
		sentFiles, sentConf := r.diff.docs(originFiles), r.diff.docs(originConfigFile)[configFile]
		wg.Go(func() { pollFiles(ctx, r.src, sentFiles, sentConf, updates) })
	}
	if r.src.Kube != nil {
		r.watchKube(ctx, &wg, updates)
	}
	resync := time.NewTicker(r.src.Resync)
	defer resync.Stop()
	var secrets <-chan time.Time
	if r.secrets != nil {
		t := time.NewTicker(r.src.SecretPoll)
		defer t.Stop()
		secrets = t.C
	}
	r.log.Info("hot reload on: watching resources", "folders", r.src.Dirs, "config", cmp.Or(configFile, r.src.ConfigName), "kubernetes", r.src.Kube != nil)
	for {
		select {
		case <-ctx.Done():
			return nil
		case u := <-updates:
			if r.diff.handle(ctx, u) {
				r.changed(ctx)
			}
		case <-resync.C:
			r.apply(ctx, true)
		case <-secrets:
			if r.secrets.refresh(ctx, r.comps.secretNames(r.diff.refusedDocs())) {
				r.log.Info("a Secret that Components read changed: their stores are built again")
				r.changed(ctx)
			}
		}
		r.publish()
	}
}

// changed puts in force what a change of the sources allows: the versions
// refused that fit now, then every kind's targets.
func (r *Reloader) changed(ctx context.Context) {
	r.diff.retry(ctx)
	r.apply(ctx, false)
}

// apply makes every kind's targets match what is in force; retry: try
// again what failed to apply.
func (r *Reloader) apply(ctx context.Context, retry bool) {
	for _, k := range r.kinds {
		k.rec.apply(ctx, retry)
	}
}

// Status is what is in force, and what was refused.
func (r *Reloader) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}
