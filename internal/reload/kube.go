package reload

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/internal/kube"
)

// loadKube lists the namespace's objects of each kind the API server
// holds, and takes them as Load does files: any error is returned. An
// optional kind whose CRD, or the RBAC to read it, is missing is read from
// files only, as the log says.
func (r *Reloader) loadKube(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, k := range r.kinds {
		ks, name := k.kube, ""
		if ks.named {
			name = r.src.ConfigName
		}
		if ks.origin == "" || ks.named && name == "" {
			continue
		}
		objs, rv, err := r.list(ctx, ks.res, name)
		switch {
		case ks.optional && (kube.IsNotFound(err) || kube.IsForbidden(err)):
			r.log.Warn(fmt.Sprintf("%s resources are not read from the API server; install the chart's %s.dapr.io CRD and sidecar RBAC, and restart", ks.res.Kind, ks.res.Plural), "err", err)
			continue
		case err != nil:
			return err
		case name != "" && len(objs) == 0:
			return fmt.Errorf("%s %q (dapr.io/config) not found in namespace %q: create it, or remove the annotation", ks.res.Kind, name, r.src.Kube.Namespace())
		}
		if err := r.diff.load(ctx, ks.origin, r.kubeDocs(objs)); err != nil {
			return err
		}
		r.watched = append(r.watched, watched{origin: ks.origin, res: ks.res, name: name, objs: objs, rv: rv})
	}
	return nil
}

// list lists, trying again while the API server is busy or out of reach
// (its 429s, a CRD installed a moment ago), until ctx ends.
func (r *Reloader) list(ctx context.Context, res kube.Resource, name string) ([]kube.Object, string, error) {
	backoff := 200 * time.Millisecond
	for {
		objs, rv, err := r.src.Kube.List(ctx, res, name)
		if err == nil || !kube.IsTransient(err) {
			return objs, rv, err
		}
		r.log.Info("listing from the API server: trying again", "resource", res.Plural, "err", err)
		select {
		case <-ctx.Done():
			return nil, "", err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// kubeDocs are objects as sources, by key.
func (r *Reloader) kubeDocs(objs []kube.Object) map[string]doc {
	out := make(map[string]doc, len(objs))
	for _, o := range objs {
		key := o.Key(r.src.Kube.Namespace())
		out[key] = doc{key: key, kind: o.Kind, name: o.Name, version: o.ResourceVersion, body: o.YAML}
	}
	return out
}

// watched is what a list at start gave: where its watch goes on from.
type watched struct {
	origin origin
	res    kube.Resource
	name   string // "": all the namespace's objects
	objs   []kube.Object
	rv     string
}

// watchKube watches the API server's objects listed at start, sending what
// each kind holds on out after each change (the latest only, when the
// reloader is busy).
func (r *Reloader) watchKube(ctx context.Context, wg *sync.WaitGroup, out chan<- update) {
	for _, l := range r.watched {
		box := &mailbox{ready: make(chan struct{}, 1)}
		w := &kube.Watcher{Client: r.src.Kube, Resource: l.res, Name: l.name, Logger: r.log,
			OnChange: func(objs map[string]kube.Object) {
				list := make([]kube.Object, 0, len(objs))
				for _, obj := range objs {
					list = append(list, obj)
				}
				box.put(update{origin: l.origin, docs: r.kubeDocs(list)})
			},
			OnError: func(err error) { box.put(update{origin: l.origin, err: err}) }}
		wg.Go(func() { _ = w.Run(ctx, l.objs, l.rv) })
		wg.Go(func() { box.forward(ctx, out) })
	}
}

// mailbox holds the latest update of an origin until it is sent: updates
// that come meanwhile replace it, as it says all the origin holds.
type mailbox struct {
	mu    sync.Mutex
	u     update
	ready chan struct{} // one token while an update waits
}

func (m *mailbox) put(u update) {
	m.mu.Lock()
	m.u = u
	m.mu.Unlock()
	select {
	case m.ready <- struct{}{}:
	default:
	}
}

func (m *mailbox) forward(ctx context.Context, out chan<- update) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.ready:
		}
		m.mu.Lock()
		u := m.u
		m.mu.Unlock()
		if !send(ctx, out, u) {
			return
		}
	}
}

// secretCache holds the Secrets that Components read, as last got: each is
// got when a Component first needs it, and again every Sources.SecretPoll
// while a Component in force reads it (get only: RBAC names the Secrets).
// It is used by the reloader's goroutine only.
type secretCache struct {
	client  *kube.Client
	entries map[string]*secretEntry
}

type secretEntry struct {
	secret kube.Secret
	err    error
}

func newSecretCache(c *kube.Client) *secretCache {
	return &secretCache{client: c, entries: map[string]*secretEntry{}}
}

func (s *secretCache) fetch(ctx context.Context, name string) *secretEntry {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sec, err := s.client.Secret(ctx, name)
	return &secretEntry{secret: sec, err: err}
}

// lookup reads secretKeyRefs through the cache; nil (standalone mode: they
// are an error) when there is none.
func (s *secretCache) lookup(ctx context.Context) components.Secrets {
	if s == nil {
		return nil
	}
	return func(ref components.SecretKeyRef) (string, error) { return s.get(ctx, ref) }
}

// get reads the value ref points at.
func (s *secretCache) get(ctx context.Context, ref components.SecretKeyRef) (string, error) {
	e, ok := s.entries[ref.Name]
	if !ok {
		e = s.fetch(ctx, ref.Name)
		s.entries[ref.Name] = e
	}
	if e.err != nil {
		return "", e.err
	}
	v, ok := e.secret.Data[ref.SecretKey()]
	if !ok {
		return "", fmt.Errorf("Secret %q has no key %q; it has: %s", ref.Name, ref.SecretKey(), strings.Join(slices.Sorted(maps.Keys(e.secret.Data)), ", "))
	}
	return string(v), nil
}

// refresh gets the Secrets names again, forgets the others, and reports
// whether any changed (its resourceVersion, or whether it can be read).
func (s *secretCache) refresh(ctx context.Context, names []string) bool {
	changed := false
	keep := map[string]bool{}
	for _, name := range names {
		keep[name] = true
		e := s.fetch(ctx, name)
		old, ok := s.entries[name]
		if !ok || old.secret.ResourceVersion != e.secret.ResourceVersion || errText(old.err) != errText(e.err) {
			changed = true
		}
		s.entries[name] = e
	}
	for name := range s.entries {
		if !keep[name] {
			delete(s.entries, name)
		}
	}
	return changed
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// inUse lists the Secrets read, with their versions.
func (s *secretCache) inUse() []Resource {
	var out []Resource
	for name, e := range s.entries {
		if e.err == nil {
			out = append(out, Resource{Kind: kindSecret, Name: name, Source: "Secret " + s.client.Namespace() + "/" + name, Version: e.secret.ResourceVersion})
		}
	}
	return out
}
