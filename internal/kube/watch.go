package kube

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/url"
	"strconv"
	"time"
)

// Watcher keeps the namespace's objects of one kind (or the one object
// Name) in step with the API server, with the fewest requests that stay
// correct: a list, then one watch request after another, each going on
// from the last resourceVersion seen (bookmarks keep it recent while
// nothing changes), so no change is missed between them. When that
// resourceVersion has expired (410 Gone: the server no longer holds the
// changes since), it lists again, and the list is the state: nothing is
// lost, as a change the watch missed is in the list. A watch that fails
// (the server restarting, the network) is made again after a backoff of 1
// s doubling to 30 s, from where it stopped. Nothing is ever re-listed
// otherwise.
type Watcher struct {
	Client   *Client
	Resource Resource
	Name     string // only the object of that name; "": all of the namespace
	// Timeout is how long one watch request lasts, ended by the server
	// and made again (default 5 to 10 minutes, at random, so that
	// sidecars started together do not come back together).
	Timeout time.Duration
	// OnChange gets the objects, by name, after each change, and once
	// more when a watch works again after OnError. It owns the map.
	OnChange func(map[string]Object)
	// OnError, when set, gets each error the watcher is trying again
	// after (the last objects stay what OnChange was given).
	OnError func(error)
	Logger  *slog.Logger

	failing bool // since an error, until a watch opens again
}

// event is one line of a watch.
type event struct {
	Type   string          `json:"type"` // ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
	Object json.RawMessage `json:"object"`
}

// Run keeps the objects in step until ctx ends, starting from objs, the
// state at resourceVersion rv (a List's); rv "" lists first.
func (w *Watcher) Run(ctx context.Context, objs []Object, rv string) error {
	log := cmp.Or(w.Logger, slog.New(slog.DiscardHandler)).With("resource", w.Resource.Plural)
	cache := make(map[string]Object, len(objs))
	for _, o := range objs {
		cache[o.Name] = o
	}
	backoff := time.Second
	var lastErr string
	fail := func(err error) {
		if err.Error() != lastErr {
			lastErr = err.Error()
			log.Warn("watching the API server: trying again", "after", backoff, "err", err)
		}
		w.failing = true
		if w.OnError != nil {
			w.OnError(err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	for ctx.Err() == nil {
		if rv == "" {
			objs, listed, err := w.Client.List(ctx, w.Resource, w.Name)
			if err != nil {
				if ctx.Err() == nil {
					fail(err)
				}
				continue
			}
			fresh := make(map[string]Object, len(objs))
			for _, o := range objs {
				fresh[o.Name] = o
			}
			if w.failing || !maps.EqualFunc(fresh, cache, func(a, b Object) bool { return a.ResourceVersion == b.ResourceVersion }) {
				cache, w.failing = fresh, false
				w.OnChange(maps.Clone(cache))
			}
			rv = listed
		}
		timeout := cmp.Or(w.Timeout, 5*time.Minute+rand.N(5*time.Minute))
		next, changed, err := w.watch(ctx, rv, timeout, cache)
		if changed {
			backoff, lastErr = time.Second, ""
		}
		rv = next
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, errExpired):
			log.Info("watch expired: listing again", "resource_version", rv)
			rv = ""
		case err != nil:
			fail(err)
		default:
			backoff, lastErr = time.Second, ""
		}
	}
	return nil
}

// watch runs one watch request from rv, applying its events to cache and
// calling OnChange after each change. It returns the last resourceVersion
// seen, whether any event came, and why the watch ended (nil: the
// server's timeout).
func (w *Watcher) watch(ctx context.Context, rv string, timeout time.Duration, cache map[string]Object) (string, bool, error) {
	q := url.Values{
		"watch":               {"1"},
		"resourceVersion":     {rv},
		"allowWatchBookmarks": {"true"},
		"timeoutSeconds":      {strconv.Itoa(int(timeout.Seconds()))},
	}
	if w.Name != "" {
		q.Set("fieldSelector", "metadata.name="+w.Name)
	}
	// The server ends the watch at timeoutSeconds; this bounds a watch
	// whose server went silent without closing it.
	ctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	resp, err := w.Client.open(ctx, w.Client.stream, w.Client.path(w.Resource)+"?"+q.Encode())
	if err != nil {
		return rv, false, err
	}
	defer resp.Body.Close()
	if w.failing { // working again: what is known is current
		w.failing = false
		w.OnChange(maps.Clone(cache))
	}
	dec := json.NewDecoder(resp.Body)
	seen := false
	for {
		var ev event
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return rv, seen, nil
			}
			return rv, seen, fmt.Errorf("watching %s: %w", w.Resource.Plural, err)
		}
		seen = true
		if ev.Type == "ERROR" {
			var st struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			_ = json.Unmarshal(ev.Object, &st)
			if st.Code == 410 {
				return rv, seen, fmt.Errorf("watching %s: %s: %w", w.Resource.Plural, st.Message, errExpired)
			}
			return rv, seen, fmt.Errorf("watching %s: %d %s", w.Resource.Plural, st.Code, st.Message)
		}
		var r resource
		if err := json.Unmarshal(ev.Object, &r); err != nil {
			return rv, seen, fmt.Errorf("watching %s: %w", w.Resource.Plural, err)
		}
		if r.Metadata.ResourceVersion != "" {
			rv = r.Metadata.ResourceVersion
		}
		switch ev.Type {
		case "ADDED", "MODIFIED":
			o, err := r.object(w.Resource.Kind)
			if err != nil {
				return rv, seen, err
			}
			cache[o.Name] = o
		case "DELETED":
			delete(cache, r.Metadata.Name)
		default: // BOOKMARK: only the resourceVersion
			continue
		}
		w.OnChange(maps.Clone(cache))
	}
}
