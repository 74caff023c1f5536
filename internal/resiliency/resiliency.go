// Package resiliency reads Dapr's Resiliency resource (timeouts, retries and
// circuit breakers, and the apps and components they apply to) and applies
// it: to invocations by target app id, to state store operations and
// publishing by component name (outbound), and to what a pub/sub component
// delivers to the app (inbound).
package resiliency

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tandem-run/tandem/internal/yamldoc"
)

// Resource is a Resiliency resource as written.
type Resource struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Scopes []string `yaml:"scopes"`
	// Source is where it was read from (a file, or an object of the API
	// server), for messages.
	Source string `yaml:"-"`
	Spec   struct {
		Policies struct {
			Timeouts        map[string]string      `yaml:"timeouts"`
			Retries         map[string]RetrySpec   `yaml:"retries"`
			CircuitBreakers map[string]BreakerSpec `yaml:"circuitBreakers"`
		} `yaml:"policies"`
		Targets struct {
			Apps       map[string]TargetSpec `yaml:"apps"`
			Components map[string]struct {
				Outbound TargetSpec `yaml:"outbound"`
				Inbound  TargetSpec `yaml:"inbound"`
			} `yaml:"components"`
			Actors map[string]any `yaml:"actors"`
		} `yaml:"targets"`
	} `yaml:"spec"`
}

// RetrySpec is a named retry policy.
type RetrySpec struct {
	Policy      string `yaml:"policy"` // constant or exponential
	Duration    string `yaml:"duration"`
	MaxInterval string `yaml:"maxInterval"`
	MaxRetries  *int   `yaml:"maxRetries"`
	Matching    any    `yaml:"matching"`
}

// BreakerSpec is a named circuit breaker.
type BreakerSpec struct {
	MaxRequests int    `yaml:"maxRequests"`
	Interval    string `yaml:"interval"`
	Timeout     string `yaml:"timeout"`
	Trip        string `yaml:"trip"`
}

// TargetSpec names the policies of one target.
type TargetSpec struct {
	Timeout        string `yaml:"timeout"`
	Retry          string `yaml:"retry"`
	CircuitBreaker string `yaml:"circuitBreaker"`
	// CircuitBreakerCacheSize is in Dapr's schema for apps (its breakers
	// per actor); accepted without effect.
	CircuitBreakerCacheSize *int `yaml:"circuitBreakerCacheSize"`
}

// Policy is what applies to one target, checked.
type Policy struct {
	Timeout time.Duration // 0: none
	Retry   *Retry
	Breaker *BreakerConfig
	// Name is "<resiliency>/<target>", for messages.
	Name string
}

// Retry is a checked retry policy.
type Retry struct {
	Exponential bool
	Interval    time.Duration // constant: between tries; exponential: the first
	MaxInterval time.Duration
	MaxRetries  int // -1: for ever
}

// Delay is the wait before retry number n (from 1).
func (r *Retry) Delay(n int) time.Duration {
	if !r.Exponential {
		return r.Interval
	}
	d := float64(r.Interval) * math.Pow(2, float64(n-1))
	if d > float64(r.MaxInterval) {
		return r.MaxInterval
	}
	return time.Duration(d)
}

// BreakerConfig is a checked circuit breaker.
type BreakerConfig struct {
	Trip        int           // consecutive failures that open it
	Timeout     time.Duration // how long it stays open
	MaxRequests int           // calls let through while half-open
	// Interval, when not 0, is how often a closed breaker forgets the
	// failures it has counted, as Dapr's interval.
	Interval time.Duration
}

// Set is every policy of the Resiliency resources that apply to one app.
type Set struct {
	Apps       map[string]*Policy
	Components map[string]*Policy // outbound: the sidecar's calls to them
	// Inbound are the components' inbound policies: what a pub/sub
	// component delivers, on its way to the app.
	Inbound map[string]*Policy
	// Ignored lists the fields present that are accepted without effect,
	// each naming its file and resource (see Resource.Ignored).
	Ignored []string
}

// App returns the policy of calls to app id, or nil.
func (s *Set) App(id string) *Policy {
	if s == nil {
		return nil
	}
	return s.Apps[id]
}

// Component returns the outbound policy of a component, or nil.
func (s *Set) Component(name string) *Policy {
	if s == nil {
		return nil
	}
	return s.Components[name]
}

// ComponentInbound returns the inbound policy of a component, or nil.
func (s *Set) ComponentInbound(name string) *Policy {
	if s == nil {
		return nil
	}
	return s.Inbound[name]
}

// NewSet is the Set of the resources of rs that apply to appID (no scopes,
// or scopes naming it), in order: an app or component that two of them
// target is an error naming the second.
func NewSet(rs []Resource, appID string) (*Set, error) {
	set := newSet()
	for _, r := range rs {
		if len(r.Scopes) > 0 && !slices.Contains(r.Scopes, appID) {
			continue
		}
		if _, err := set.build(r); err != nil {
			return nil, fmt.Errorf("%s: %w", r.Source, err)
		}
		for _, f := range r.Ignored() {
			set.Ignored = append(set.Ignored, r.Source+": "+f)
		}
	}
	return set, nil
}

// Parse reads the Resiliency documents of YAML; source names it in errors.
// Fields it does not know are errors.
func Parse(b []byte, source string) ([]Resource, error) {
	var out []Resource
	err := yamldoc.Each(b, source, "Resiliency", func(doc int, node *yaml.Node) error {
		r := Resource{Source: source}
		if err := yamldoc.Strict(node, &r); err != nil {
			return fmt.Errorf("%s: document %d: %w", source, doc, err)
		}
		if r.APIVersion != "dapr.io/v1alpha1" {
			return fmt.Errorf("%s: resiliency %q: apiVersion %q is not supported; use dapr.io/v1alpha1", source, r.Metadata.Name, r.APIVersion)
		}
		if _, err := newSet().build(r); err != nil {
			return fmt.Errorf("%s: %w", source, err)
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Ignored lists the fields of r that this sidecar accepts from Dapr's
// schema without acting on them, each as `resiliency "name": <path>`:
// retries' matching (retries are decided by whether a call is safe to
// repeat), circuit breakers of components' inbound policies (an inbound
// policy's retry and timeout apply to pub/sub delivery, its breaker to
// nothing) and actors (this sidecar has none).
func (r Resource) Ignored() []string {
	var out []string
	add := func(path string) { out = append(out, fmt.Sprintf("resiliency %q: %s", r.Metadata.Name, path)) }
	for name, rs := range r.Spec.Policies.Retries {
		if rs.Matching != nil {
			add("spec.policies.retries." + name + ".matching")
		}
	}
	for name, c := range r.Spec.Targets.Components {
		// An inbound policy applies to what a pub/sub component delivers
		// to the app: its retry and timeout, not its circuit breaker.
		if c.Inbound.CircuitBreaker != "" {
			add("spec.targets.components." + name + ".inbound.circuitBreaker")
		}
		if c.Inbound.CircuitBreakerCacheSize != nil {
			add("spec.targets.components." + name + ".inbound.circuitBreakerCacheSize")
		}
		if c.Outbound.CircuitBreakerCacheSize != nil {
			add("spec.targets.components." + name + ".outbound.circuitBreakerCacheSize")
		}
	}
	for id, a := range r.Spec.Targets.Apps {
		if a.CircuitBreakerCacheSize != nil {
			add("spec.targets.apps." + id + ".circuitBreakerCacheSize")
		}
	}
	if len(r.Spec.Targets.Actors) > 0 {
		add("spec.targets.actors")
	}
	sort.Strings(out)
	return out
}

func newSet() *Set {
	return &Set{Apps: map[string]*Policy{}, Components: map[string]*Policy{}, Inbound: map[string]*Policy{}}
}

// build checks r and adds its targets to s.
func (s *Set) build(r Resource) (*Set, error) {
	name := r.Metadata.Name
	errf := func(format string, args ...any) error {
		return fmt.Errorf("resiliency %q: %s", name, fmt.Sprintf(format, args...))
	}
	pol := r.Spec.Policies
	policy := func(where string, t TargetSpec) (*Policy, error) {
		p := &Policy{Name: name + "/" + where}
		if t.Timeout != "" {
			v, ok := pol.Timeouts[t.Timeout]
			if !ok {
				// Dapr also accepts a duration in place of a name.
				v = t.Timeout
			}
			d, err := duration(v)
			if err != nil || d <= 0 {
				return nil, errf("%s: timeout %q is neither a policy under spec.policies.timeouts nor a duration such as 5s", where, t.Timeout)
			}
			p.Timeout = d
		}
		if t.Retry != "" {
			rs, ok := pol.Retries[t.Retry]
			if !ok {
				return nil, errf("%s: retry %q is not a policy under spec.policies.retries", where, t.Retry)
			}
			rt, err := retry(rs)
			if err != nil {
				return nil, errf("retries.%s: %v", t.Retry, err)
			}
			p.Retry = rt
		}
		if t.CircuitBreaker != "" {
			bs, ok := pol.CircuitBreakers[t.CircuitBreaker]
			if !ok {
				return nil, errf("%s: circuitBreaker %q is not a policy under spec.policies.circuitBreakers", where, t.CircuitBreaker)
			}
			b, err := breakerConfig(bs)
			if err != nil {
				return nil, errf("circuitBreakers.%s: %v", t.CircuitBreaker, err)
			}
			p.Breaker = b
		}
		return p, nil
	}
	for id, t := range r.Spec.Targets.Apps {
		p, err := policy("apps."+id, t)
		if err != nil {
			return nil, err
		}
		if _, dup := s.Apps[id]; dup {
			return nil, errf("app %q has policies in two Resiliency resources", id)
		}
		s.Apps[id] = p
	}
	for c, t := range r.Spec.Targets.Components {
		p, err := policy("components."+c+".outbound", t.Outbound)
		if err != nil {
			return nil, err
		}
		if _, dup := s.Components[c]; dup {
			return nil, errf("component %q has policies in two Resiliency resources", c)
		}
		s.Components[c] = p
		if t.Inbound != (TargetSpec{}) {
			in, err := policy("components."+c+".inbound", t.Inbound)
			if err != nil {
				return nil, err
			}
			s.Inbound[c] = in
		}
	}
	return s, nil
}

func retry(r RetrySpec) (*Retry, error) {
	out := &Retry{MaxRetries: -1}
	if r.MaxRetries != nil {
		if *r.MaxRetries < -1 {
			return nil, fmt.Errorf("maxRetries %d: give -1 (for ever) or a count", *r.MaxRetries)
		}
		out.MaxRetries = *r.MaxRetries
	}
	var err error
	switch r.Policy {
	case "", "constant":
		out.Interval, err = durationOr(r.Duration, 5*time.Second)
	case "exponential":
		out.Exponential = true
		out.Interval, err = durationOr(r.Duration, 500*time.Millisecond)
		if err == nil {
			out.MaxInterval, err = durationOr(r.MaxInterval, time.Minute)
		}
	default:
		return nil, fmt.Errorf("policy %q is not valid; accepted: constant, exponential", r.Policy)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// tripExpr is a breaker's trip condition, compiled the first time a
// Resiliency resource declares a breaker rather than at every sidecar's
// start (16 KB in 190 objects).
var tripExpr = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^\s*consecutiveFailures\s*(>=|>)\s*([0-9]+)\s*$`)
})

func breakerConfig(b BreakerSpec) (*BreakerConfig, error) {
	m := tripExpr().FindStringSubmatch(b.Trip)
	if m == nil {
		return nil, fmt.Errorf("trip %q is not supported; write consecutiveFailures >= N (or > N)", b.Trip)
	}
	n, _ := strconv.Atoi(m[2])
	if m[1] == ">" {
		n++
	}
	if n < 1 {
		return nil, fmt.Errorf("trip %q never holds or always does; N must be at least 1", b.Trip)
	}
	timeout, err := durationOr(b.Timeout, time.Minute)
	if err != nil {
		return nil, err
	}
	interval, err := durationOr(b.Interval, 0)
	if err != nil {
		return nil, fmt.Errorf("interval: %w", err)
	}
	if b.MaxRequests < 0 {
		return nil, fmt.Errorf("maxRequests %d is negative", b.MaxRequests)
	}
	return &BreakerConfig{Trip: n, Timeout: timeout, MaxRequests: max(b.MaxRequests, 1), Interval: interval}, nil
}

func durationOr(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := duration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration such as 500ms or 5s", s)
	}
	return d, nil
}

func duration(s string) (time.Duration, error) { return time.ParseDuration(strings.TrimSpace(s)) }
