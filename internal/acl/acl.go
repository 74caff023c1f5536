// Package acl enforces a Configuration's spec.accessControl on the calls
// that reach this sidecar from peers, before they reach the app, with
// Dapr's rules:
//
//   - no access control, or neither a default action nor policies: allow;
//   - policies but no default action: the default is deny;
//   - a caller with a policy (same namespace and trust domain): the first
//     operation whose path pattern (* one segment, ** any) and verb match
//     decides; else the policy's default action; else the global one;
//   - any other caller: the global default action.
//
// With mutual TLS, callers are known by the app id, namespace and trust
// domain of their verified certificate (invoke.Authenticate puts them in the
// request); without it, by what their sidecar sends, which is as
// trustworthy as the network that reaches the internal port. A sidecar with
// mutual TLS that accepts plaintext peers for a rollout
// (--allow-plaintext-peers) knows a plaintext caller by nothing: it has no
// verified identity, so no app's policy applies to it, whatever app id it
// claims, and the global default action decides.
package acl

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/tandem-run/tandem/internal/config"
	"github.com/tandem-run/tandem/internal/identity"
	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// ACL decides whether a caller may call a method.
type ACL struct {
	defaultAllow bool
	namespace    string
	trustDomain  string
	policies     map[string]config.Policy // by app id
}

// New returns the ACL of ac for an app in namespace, or nil when ac allows
// everything.
func New(ac *config.AccessControl, namespace string) *ACL {
	if ac == nil || (ac.DefaultAction == "" && len(ac.Policies) == 0) {
		return nil
	}
	a := &ACL{
		defaultAllow: ac.DefaultAction == "allow",
		namespace:    namespace,
		trustDomain:  cmp.Or(ac.TrustDomain, "public"),
		policies:     map[string]config.Policy{},
	}
	for _, p := range ac.Policies {
		a.policies[p.AppID] = p
	}
	return a
}

// Allowed reports whether caller (in callerNS, of trust domain callerTD, ""
// for this app's) may call method (the escaped path, without its leading
// slash) with verb ("" for gRPC calls), and why.
func (a *ACL) Allowed(caller, callerNS, callerTD, method, verb string) (bool, string) {
	if a == nil {
		return true, ""
	}
	p, ok := a.policies[caller]
	if !ok || cmp.Or(p.TrustDomain, "public") != cmp.Or(callerTD, a.trustDomain) || (p.Namespace != "" && p.Namespace != cmp.Or(callerNS, a.namespace)) {
		return a.defaultAllow, fmt.Sprintf("app %q has no policy here; the default action is %s", caller, action(a.defaultAllow))
	}
	path := "/" + unescape(method)
	for _, op := range p.Operations {
		if match(op.Name, path) && (verb == "" || len(op.HTTPVerb) == 0 || slices.Contains(op.HTTPVerb, "*") || slices.Contains(op.HTTPVerb, verb)) {
			allow := op.Action != "deny"
			return allow, fmt.Sprintf("operation %s of app %q's policy says %s", op.Name, caller, action(allow))
		}
	}
	if p.DefaultAction != "" {
		allow := p.DefaultAction == "allow"
		return allow, fmt.Sprintf("no operation of app %q's policy matches %s %s; its default action is %s", caller, verb, path, action(allow))
	}
	return a.defaultAllow, fmt.Sprintf("no operation of app %q's policy matches %s %s; the default action is %s", caller, verb, path, action(a.defaultAllow))
}

// AllowedUnverified reports whether a caller without a verified identity (a
// plaintext peer of a sidecar with mutual TLS) may call, and why: the global
// default action decides; claimed, the app id its sidecar sent, is named in
// the reason only.
func (a *ACL) AllowedUnverified(claimed string) (bool, string) {
	if a == nil {
		return true, ""
	}
	return a.defaultAllow, fmt.Sprintf("the caller came without mutual TLS (accepted by --allow-plaintext-peers) claiming to be app %q; "+
		"it has no verified identity, so no app's policy applies to it, and the default action is %s", claimed, action(a.defaultAllow))
}

func action(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}

func unescape(m string) string {
	if u, err := url.PathUnescape(m); err == nil {
		return u
	}
	return m
}

// match matches a path against a pattern of segments, where * is any one
// segment and ** any number of them (at least one).
func match(pattern, path string) bool {
	return matchSegs(strings.Split(strings.Trim(pattern, "/"), "/"), strings.Split(strings.Trim(path, "/"), "/"))
}

func matchSegs(pat, segs []string) bool {
	for len(pat) > 0 {
		switch p := pat[0]; p {
		case "**":
			if len(pat) == 1 {
				return len(segs) > 0
			}
			for i := 1; i <= len(segs); i++ {
				if matchSegs(pat[1:], segs[i:]) {
					return true
				}
			}
			return false
		default:
			if len(segs) == 0 || (p != "*" && p != segs[0]) {
				return false
			}
			pat, segs = pat[1:], segs[1:]
		}
	}
	return len(segs) == 0
}

// Hop wraps the internal port's handler: a call the ACL denies is answered
// 403 as a hop error, which the caller's sidecar reports as
// ERR_PERMISSION_DENIED; the app never sees it.
func (a *ACL) Hop(next http.Handler) http.Handler {
	if a == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.refused(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refused answers the call 403 when the ACL denies it, and reports whether
// it did.
func (a *ACL) refused(w http.ResponseWriter, r *http.Request) bool {
	ok, why := a.decide(r)
	if !ok {
		wire.WriteError(w, http.StatusForbidden, wire.KindPermissionDenied, "access control denies the call: "+why)
	}
	return !ok
}

// decide is Allowed for a call on the internal port, or AllowedUnverified
// when its caller came without mutual TLS.
func (a *ACL) decide(r *http.Request) (bool, string) {
	if claimed, unverified := identity.Unverified(r.Context()); unverified {
		return a.AllowedUnverified(claimed)
	}
	verb := r.Method
	if wire.IsGRPCProxy(r.Header) {
		verb = ""
	}
	var td string
	if id, verified := identity.FromContext(r.Context()); verified {
		td = id.TrustDomain
	}
	return a.Allowed(r.Header.Get(wire.CallerAppID), r.Header.Get(wire.CallerNamespace), td, strings.TrimPrefix(r.URL.EscapedPath(), "/"), verb)
}

// Switch holds the ACL in force, replaced whole when the Configuration
// changes: each call is decided by the ACL in force when it arrives. The
// zero Switch allows everything.
type Switch struct{ cur atomic.Pointer[ACL] }

// Set puts a in force (nil: allow everything).
func (s *Switch) Set(a *ACL) { s.cur.Store(a) }

// Hop is ACL.Hop with the ACL in force at each call.
func (s *Switch) Hop(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := s.cur.Load(); a != nil && a.refused(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}
