// Package resolver turns an app id into the addresses of that app's sidecars.
//
// Two implementations live below it: kubernetes, which reads the DNS records of
// the headless <app-id>-dapr Service, and standalone, which reads a registry
// folder that every sidecar on the machine writes itself into.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrNotFound is returned, wrapped, when no sidecar of the app id is known.
var ErrNotFound = errors.New("app id not found")

// Target names an app to call: its id and, optionally, its namespace.
type Target struct {
	ID        string
	Namespace string // empty means the caller's own namespace
}

func (t Target) String() string {
	if t.Namespace == "" {
		return t.ID
	}
	return t.ID + "." + t.Namespace
}

// Resolver finds the internal (sidecar-to-sidecar) addresses, as host:port, of
// the sidecars that serve an app. An implementation returns at least one address
// or an error; when it spreads load, the first address is the one to try first.
type Resolver interface {
	Resolve(ctx context.Context, target Target) ([]string, error)
}

// Forgetter is a Resolver with a cache: Forget drops what it knows of
// target, so that the next Resolve asks again (a caller found none of the
// addresses it had taking connections: a pod went away).
type Forgetter interface {
	Forget(target Target)
}

// Rotate returns addrs starting at the n-th modulo their count, the ones
// before it moved to the end: a Resolver that calls it with a counter it
// advances per call spreads load over the addresses. addrs is not changed.
func Rotate(addrs []string, n uint32) []string {
	if len(addrs) < 2 {
		return addrs
	}
	k := int(n % uint32(len(addrs)))
	out := make([]string, 0, len(addrs))
	return append(append(out, addrs[k:]...), addrs[:k]...)
}

// ParseTarget parses "id" or "id.namespace" as used in invocation URLs and in
// the dapr-app-id header. The id must be a DNS-1123 label.
func ParseTarget(s string) (Target, error) {
	id, ns, _ := strings.Cut(s, ".")
	if err := ValidateID(id); err != nil {
		return Target{}, err
	}
	if ns != "" {
		if err := validateLabel(ns); err != nil {
			return Target{}, fmt.Errorf("namespace %q in %q: %w", ns, s, err)
		}
	}
	return Target{ID: id, Namespace: ns}, nil
}

// MaxIDLength keeps "<id>-dapr" within the 63 characters of a DNS label.
const MaxIDLength = 63 - len("-dapr")

// ValidateID reports whether id can be an app id: a DNS-1123 label of at most
// MaxIDLength characters, so that "<id>-dapr" is a valid Service name.
func ValidateID(id string) error {
	if id == "" {
		return errors.New("app id is empty")
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("app id %q is %d characters long; at most %d are allowed so that %q fits a DNS label", id, len(id), MaxIDLength, id+"-dapr")
	}
	if err := validateLabel(id); err != nil {
		return fmt.Errorf("app id %q: %w", id, err)
	}
	return nil
}

func validateLabel(s string) error {
	if s == "" || len(s) > 63 {
		return errors.New("must be 1 to 63 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return errors.New("must be lowercase letters, digits and '-', starting and ending with a letter or digit (DNS-1123 label)")
		}
	}
	return nil
}
