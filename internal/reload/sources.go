package reload

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"
)

// reconciler keeps one kind of resource in force. The differ (sources)
// hands it each new version of a source of the origins it reads: stage
// parses the kind's part of it and checks that part against the parts in
// force of the other sources; then commit puts the part in force, or drop
// forgets it. apply then makes the kind's targets match what is in force.
type reconciler interface {
	// kind names the kind as Status and the metrics do: "Component".
	kind() string
	// stage parses and checks d's resources of this kind against those in
	// force, d in place of its source's version; n is how many d holds.
	// Nothing changes: the part is held until commit or drop.
	stage(ctx context.Context, d doc) (n int, err error)
	// commit puts the part staged for the source key in force. It fails
	// only for a kind that is alone on its origins and whose part cannot
	// be fully checked before it acts (the Configuration's tracing, whose
	// exporters are made here); then nothing changed, and the version is
	// refused.
	commit(key string) error
	// drop forgets the part staged for the source key.
	drop(key string)
	// remove forgets the part in force of the source key, which is gone.
	remove(key string)
	// start puts what Load read in force on tg as the sidecar does at
	// start: an error stops it.
	start(ctx context.Context, tg Targets) error
	// apply makes the targets match what is in force; retry: try again
	// only what failed to apply.
	apply(ctx context.Context, retry bool)
	// report adds to st what is in use, and what failed to apply.
	report(st *Status)
}

// sources is the differ: which version of each source is in force, which
// versions were refused and why, and which keys each origin last held. A
// version is put in force whole or not at all: every kind that reads its
// origin stages its part, then all commit; or all drop, the version is
// refused, and the one in force stays.
type sources struct {
	readers map[origin]reader
	inForce map[string]taken           // by source key
	refused map[string]refusal         // by source key, or an origin's
	held    map[origin]map[string]bool // the keys each origin last held
	m       *metrics
	log     *slog.Logger
}

// reader is what the differ knows of an origin: the kinds that read it,
// and, when it is one object, its name (its deletion is refused).
type reader struct {
	kinds []reconciler
	one   string
}

// taken is a source's version in force.
type taken struct {
	doc  doc
	kind string // as counted: the object's kind, or the first kind it holds, or kindFile
}

// refusal is a version refused, or an origin that could not be read.
type refusal struct {
	Rejection
	origin origin
	doc    doc // the version; zero for an origin's error, which is not retried
}

func newSources(readers map[origin]reader, m *metrics, log *slog.Logger) *sources {
	return &sources{readers: readers, inForce: map[string]taken{}, refused: map[string]refusal{},
		held: map[origin]map[string]bool{}, m: m, log: log}
}

// load takes what an origin holds at start: any error is returned.
func (s *sources) load(ctx context.Context, o origin, docs map[string]doc) error {
	keys := map[string]bool{}
	for _, key := range slices.Sorted(maps.Keys(docs)) {
		if _, err := s.put(ctx, o, docs[key]); err != nil {
			return err
		}
		keys[key] = true
	}
	s.held[o] = keys
	return nil
}

// put puts d in force if every kind that reads o takes its part of it, and
// returns d's kind as counted.
func (s *sources) put(ctx context.Context, o origin, d doc) (string, error) {
	kinds := s.readers[o].kinds
	dropAll := func(ks []reconciler) {
		for _, k := range ks {
			k.drop(d.key)
		}
	}
	kind, total := "", 0
	for _, k := range kinds {
		n, err := k.stage(ctx, d)
		if err != nil {
			dropAll(kinds)
			return "", err
		}
		if n > 0 && kind == "" {
			kind = k.kind()
		}
		total += n
	}
	if d.kind != "" && total == 0 {
		dropAll(kinds)
		return "", fmt.Errorf("%s: holds no %s", d.key, d.kind)
	}
	for i, k := range kinds {
		if err := k.commit(d.key); err != nil {
			dropAll(kinds[i+1:])
			return "", err
		}
	}
	kind = cmp.Or(d.kind, kind, kindFile)
	s.inForce[d.key] = taken{doc: d, kind: kind}
	return kind, nil
}

// handle takes an origin's update, and reports whether what is in force
// changed.
func (s *sources) handle(ctx context.Context, u update) bool {
	okey := u.origin.key()
	if u.err != nil {
		s.refuse(okey, refusal{Rejection: Rejection{Source: okey, Error: u.err.Error()}, origin: u.origin})
		return false
	}
	delete(s.refused, okey)
	if name := s.readers[u.origin].one; name != "" && len(u.docs) == 0 {
		kind := s.readers[u.origin].kinds[0].kind()
		s.refuse(okey, refusal{Rejection: Rejection{Kind: kind, Name: name, Source: okey,
			Error: fmt.Sprintf("%s %q was deleted; the one read last stays in force until it is created again", kind, name)}, origin: u.origin})
		return false
	}
	changed := false
	for _, key := range slices.Sorted(maps.Keys(s.held[u.origin])) {
		_, listed := u.docs[key]
		if _, unread := u.errs[key]; !listed && !unread && s.remove(u.origin, key) {
			changed = true
		}
	}
	keys := map[string]bool{}
	for _, key := range slices.Sorted(maps.Keys(u.errs)) {
		keys[key] = true
		s.refuseUnread(u.origin, key, u.errs[key])
	}
	for _, key := range slices.Sorted(maps.Keys(u.docs)) {
		keys[key] = true
		if s.take(ctx, u.origin, u.docs[key], false) {
			changed = true
		}
	}
	s.held[u.origin] = keys
	return changed
}

// remove forgets the source key of o, which is gone, and reports whether
// it was in force.
func (s *sources) remove(o origin, key string) bool {
	delete(s.refused, key)
	t, ok := s.inForce[key]
	if !ok {
		return false
	}
	for _, k := range s.readers[o].kinds {
		k.remove(key)
	}
	delete(s.inForce, key)
	s.m.reloads.WithLabelValues(t.kind, "applied").Inc()
	s.log.Info("resource removed", "source", key)
	return true
}

// take puts the version d of a source of o in force when it checks out,
// and reports whether it did. quiet: d was refused before; it is not
// counted or logged again if it still is.
func (s *sources) take(ctx context.Context, o origin, d doc, quiet bool) bool {
	prev, ok := s.inForce[d.key]
	if ok && prev.doc.version == d.version {
		delete(s.refused, d.key)
		return false
	}
	if rej, ok := s.refused[d.key]; ok && rej.doc.version == d.version && !quiet {
		return false
	}
	kind, err := s.put(ctx, o, d)
	if err != nil {
		if !quiet {
			s.refuse(d.key, refusal{Rejection: Rejection{Kind: cmp.Or(d.kind, prev.kind, kindFile), Name: d.name,
				Source: d.key, Version: d.version, Error: err.Error()}, origin: o, doc: d})
		}
		return false
	}
	delete(s.refused, d.key)
	s.m.reloads.WithLabelValues(kind, "applied").Inc()
	s.log.Info("resource changed: in force", "kind", kind, "source", d.key, "version", d.version)
	return true
}

// retry takes again the versions refused, which may fit now: one refused
// for what another source held (the same component name, a target with
// two policies) or for a Secret (missing, or without the key).
func (s *sources) retry(ctx context.Context) {
	for again := true; again; {
		again = false
		for _, key := range slices.Sorted(maps.Keys(s.refused)) {
			if rej := s.refused[key]; rej.doc.key != "" && s.take(ctx, rej.origin, rej.doc, true) {
				again = true
			}
		}
	}
}

// refuseUnread refuses the source key of o, which could not be read (it
// is never retried: there is no version to take); it is not counted or
// logged again while it fails the same way. Its version in force stays.
func (s *sources) refuseUnread(o origin, key string, err error) {
	if rej, ok := s.refused[key]; ok && rej.doc.key == "" && rej.Error == err.Error() {
		return
	}
	s.refuse(key, refusal{Rejection: Rejection{Source: key, Error: err.Error()}, origin: o})
}

// refuse records a refused version, logs it and counts it.
func (s *sources) refuse(key string, rej refusal) {
	rej.Since = time.Now()
	s.refused[key] = rej
	s.m.reloads.WithLabelValues(cmp.Or(rej.Kind, kindFile), "rejected").Inc()
	s.log.Error("resource change rejected: what was in force stays", "source", rej.Source, "version", rej.Version, "err", rej.Error)
}

// docs are the versions in force of the sources o last held.
func (s *sources) docs(o origin) map[string]doc {
	out := map[string]doc{}
	for key := range s.held[o] {
		if t, ok := s.inForce[key]; ok {
			out[key] = t.doc
		}
	}
	return out
}

// refusedDocs are the versions refused.
func (s *sources) refusedDocs() []doc {
	var out []doc
	for _, rej := range s.refused {
		if rej.doc.key != "" {
			out = append(out, rej.doc)
		}
	}
	return out
}

// report adds the refusals to st.
func (s *sources) report(st *Status) {
	for _, rej := range s.refused {
		st.Rejected = append(st.Rejected, rej.Rejection)
	}
}
