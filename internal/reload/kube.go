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

// loadKube lists the namespace's Components and Resiliency resources and
// reads the Configuration --config names. Without the resiliencies.dapr.io
// CRD, or the RBAC to read it (a chart older than the sidecar), Resiliency
// resources are read from files only, as the log says.
func (r *Reloader) loadKube(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	kc := r.src.Kube
	objs, rv, err := r.list(ctx, kube.Components, "")
	if err != nil {
		return err
	}
	if err := r.loadResources(ctx, originKubeComponents, r.kubeDocs(objs)); err != nil {
		return err
	}
	r.listed[originKubeComponents] = listed{objs, rv}
	objs, rv, err = r.list(ctx, kube.Resiliencies, "")
	switch {
	case kube.IsNotFound(err) || kube.IsForbidden(err):
		r.log.Warn("Resiliency resources are not read from the API server; install the chart's resiliencies.dapr.io CRD and sidecar RBAC, and restart", "err", err)
	case err != nil:
		return err
	default:
		if err := r.loadResources(ctx, originKubeResiliencies, r.kubeDocs(objs)); err != nil {
			return err
		}
		r.listed[originKubeResiliencies] = listed{objs, rv}
	}
	if name := r.src.ConfigName; name != "" {
		objs, rv, err := r.list(ctx, kube.Configurations, name)
		if err != nil {
			return err
		}
		if len(objs) == 0 {
			return fmt.Errorf("Configuration %q (dapr.io/config) not found in namespace %q: create it, or remove the annotation", name, kc.Namespace())
		}
		d := r.kubeDocs(objs)[objs[0].Key(kc.Namespace())]
		if r.conf, err = parseConfig(d); err != nil {
			return err
		}
		r.listed[originKubeConfiguration] = listed{objs, rv}
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

// listed is what a list at start gave: where its watch goes on from.
type listed struct {
	objs []kube.Object
	rv   string
}

// watchKube watches the API server's objects listed at start, sending what
// each kind holds on out after each change (the latest only, when the
// reloader is busy).
func (r *Reloader) watchKube(ctx context.Context, wg *sync.WaitGroup, out chan<- update) {
	for _, o := range []origin{originKubeComponents, originKubeResiliencies, originKubeConfiguration} {
		l, ok := r.listed[o]
		if !ok {
			continue
		}
		res, name := kube.Components, ""
		switch o {
		case originKubeResiliencies:
			res = kube.Resiliencies
		case originKubeConfiguration:
			res, name = kube.Configurations, r.src.ConfigName
		}
		box := &mailbox{ready: make(chan struct{}, 1)}
		w := &kube.Watcher{Client: r.src.Kube, Resource: res, Name: name, Logger: r.log,
			OnChange: func(objs map[string]kube.Object) {
				list := make([]kube.Object, 0, len(objs))
				for _, obj := range objs {
					list = append(list, obj)
				}
				box.put(update{origin: o, docs: r.kubeDocs(list)})
			},
			OnError: func(err error) { box.put(update{origin: o, err: err}) }}
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
