package acl

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/config"
	"github.com/tandem-run/tandem/internal/identity"
	"github.com/tandem-run/tandem/internal/invoke/wire"
)

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, path string
		want          bool
	}{
		{"/op1", "/op1", true},
		{"/op1", "/op1/x", false},
		{"/op2/*", "/op2/x", true},
		{"/op2/*", "/op2/x/y", false},
		{"/op2/*", "/op2", false},
		{"/op3/**", "/op3/a/b/c", true},
		{"/op3/**", "/op3", false},
		{"/a/**/z", "/a/b/c/z", true},
		{"/a/**/z", "/a/z", false},
		{"/*/orders", "/v1/orders", true},
		{"/Op1", "/op1", false},
	} {
		if got := match(c.pattern, c.path); got != c.want {
			t.Errorf("match(%q, %q) = %v, want %v", c.pattern, c.path, got, c.want)
		}
	}
}

func TestRules(t *testing.T) {
	front := config.Policy{AppID: "front", DefaultAction: "deny", Operations: []config.Operation{
		{Name: "/public/*", HTTPVerb: []string{"GET"}, Action: "allow"},
		{Name: "/admin/**", HTTPVerb: []string{"*"}, Action: "deny"},
	}}
	open := config.Policy{AppID: "ops", Operations: []config.Operation{{Name: "/admin/**", Action: "allow"}}}
	for _, c := range []struct {
		name         string
		ac           *config.AccessControl
		caller, ns   string
		method, verb string
		want         bool
	}{
		{"no access control", nil, "x", "", "anything", "GET", true},
		{"empty access control", &config.AccessControl{}, "x", "", "anything", "GET", true},
		{"policies without a default deny others", &config.AccessControl{Policies: []config.Policy{front}}, "x", "", "public/a", "GET", false},
		{"global allow", &config.AccessControl{DefaultAction: "allow", Policies: []config.Policy{front}}, "x", "", "admin/a", "GET", true},
		{"operation allows", &config.AccessControl{DefaultAction: "deny", Policies: []config.Policy{front}}, "front", "", "public/a", "GET", true},
		{"verb not listed", &config.AccessControl{DefaultAction: "deny", Policies: []config.Policy{front}}, "front", "", "public/a", "POST", false},
		{"operation denies", &config.AccessControl{DefaultAction: "allow", Policies: []config.Policy{front}}, "front", "", "admin/a/b", "GET", false},
		{"policy default", &config.AccessControl{DefaultAction: "allow", Policies: []config.Policy{front}}, "front", "", "other", "GET", false},
		{"gRPC ignores verbs", &config.AccessControl{DefaultAction: "deny", Policies: []config.Policy{front}}, "front", "", "public/a", "", true},
		{"policy without default falls to global", &config.AccessControl{DefaultAction: "deny", Policies: []config.Policy{open}}, "ops", "", "other", "GET", false},
		{"escaped path is matched decoded", &config.AccessControl{DefaultAction: "deny", Policies: []config.Policy{front}}, "front", "", "public/a%20b", "GET", true},
		{"other namespace", &config.AccessControl{DefaultAction: "deny", Policies: []config.Policy{{AppID: "front", Namespace: "prod", DefaultAction: "allow"}}}, "front", "dev", "x", "GET", false},
		{"same namespace", &config.AccessControl{DefaultAction: "deny", Policies: []config.Policy{{AppID: "front", Namespace: "prod", DefaultAction: "allow"}}}, "front", "prod", "x", "GET", true},
	} {
		got, why := New(c.ac, "prod").Allowed(c.caller, c.ns, "", c.method, c.verb)
		if got != c.want {
			t.Errorf("%s: %v (%s), want %v", c.name, got, why, c.want)
		}
	}
}

// A Switch decides each call by the ACL in force when it arrives.
func TestSwitch(t *testing.T) {
	var sw Switch
	h := sw.Hop(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	call := func() int {
		r := httptest.NewRequest("GET", "/orders/1", nil)
		r.Header.Set(wire.CallerAppID, "front")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	if got := call(); got != http.StatusNoContent {
		t.Errorf("no ACL: %d", got)
	}
	sw.Set(New(&config.AccessControl{DefaultAction: "deny"}, "default"))
	if got := call(); got != http.StatusForbidden {
		t.Errorf("a denying ACL set: %d", got)
	}
	sw.Set(nil)
	if got := call(); got != http.StatusNoContent {
		t.Errorf("ACL taken out: %d", got)
	}
}

// A caller without mutual TLS on a sidecar that has it (a rollout window)
// has no identity: the policy of the app it claims to be does not apply to
// it, and the global default action decides.
func TestUnverifiedCaller(t *testing.T) {
	onlyFront := []config.Policy{{AppID: "front", DefaultAction: "allow"}}
	for _, c := range []struct {
		name       string
		ac         *config.AccessControl
		unverified bool
		want       int
	}{
		{"verified front", &config.AccessControl{DefaultAction: "deny", Policies: onlyFront}, false, http.StatusNoContent},
		{"unverified, claiming front", &config.AccessControl{DefaultAction: "deny", Policies: onlyFront}, true, http.StatusForbidden},
		{"unverified, policies without a default", &config.AccessControl{Policies: onlyFront}, true, http.StatusForbidden},
		{"unverified, default allow", &config.AccessControl{DefaultAction: "allow", Policies: []config.Policy{{AppID: "front", DefaultAction: "deny"}}}, true, http.StatusNoContent},
		{"unverified, no access control", nil, true, http.StatusNoContent},
	} {
		t.Run(c.name, func(t *testing.T) {
			var sw Switch
			sw.Set(New(c.ac, "default"))
			h := sw.Hop(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
			r := httptest.NewRequest("GET", "/orders/1", nil)
			r.Header.Set(wire.CallerAppID, "front")
			if c.unverified {
				r = r.WithContext(identity.NewUnverifiedContext(r.Context(), "front"))
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != c.want {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, c.want)
			}
			if c.want == http.StatusForbidden && (!strings.Contains(w.Body.String(), "no verified identity") || !strings.Contains(w.Body.String(), `"front"`)) {
				t.Errorf("the refusal does not say why: %s", w.Body)
			}
		})
	}
}
