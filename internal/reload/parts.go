package reload

import (
	"maps"
	"slices"
)

// parts holds what the sources hold of one kind, by source key: the part
// of the version in force, and the part of a new version staged until it
// is committed or dropped. A reconciler keeps its resources in one.
type parts[T any] struct {
	inForce map[string]part[T]
	staged  map[string]part[T]
}

// part is what one version of a source holds of a kind.
type part[T any] struct {
	source, version string
	items           []T
}

// stage holds items as d's part until commit or drop.
func (p *parts[T]) stage(d doc, items []T) {
	if p.staged == nil {
		p.staged = map[string]part[T]{}
	}
	p.staged[d.key] = part[T]{source: d.key, version: d.version, items: items}
}

// commit puts the part staged for the source key in force in place of the
// one there was.
func (p *parts[T]) commit(key string) {
	s, ok := p.staged[key]
	if !ok {
		return
	}
	delete(p.staged, key)
	if len(s.items) == 0 {
		delete(p.inForce, key)
		return
	}
	if p.inForce == nil {
		p.inForce = map[string]part[T]{}
	}
	p.inForce[key] = s
}

// drop forgets the part staged for the source key.
func (p *parts[T]) drop(key string) { delete(p.staged, key) }

// remove forgets the source key's part in force.
func (p *parts[T]) remove(key string) { delete(p.inForce, key) }

// all is the parts in force, in the order of their sources' keys.
func (p *parts[T]) all() []part[T] {
	out := make([]part[T], 0, len(p.inForce))
	for _, key := range slices.Sorted(maps.Keys(p.inForce)) {
		out = append(out, p.inForce[key])
	}
	return out
}

// items is what the parts in force hold, but that of the source except
// ("": all), in the order of their sources' keys.
func (p *parts[T]) items(except string) []T {
	var out []T
	for _, q := range p.all() {
		if q.source != except {
			out = append(out, q.items...)
		}
	}
	return out
}
