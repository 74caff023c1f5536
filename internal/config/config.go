// Package config reads the Dapr Configuration resource (apiVersion
// dapr.io/v1alpha1, kind Configuration): its tracing settings and its access
// control (which internal/acl enforces). Fields this sidecar does not
// know are errors, so a typo never silently turns a feature off; sections of
// Dapr's Configuration that it does not implement are accepted and reported,
// so real Dapr manifests load unchanged.
package config

import (
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tandem-run/tandem/internal/yamldoc"
)

// Configuration is a Dapr Configuration resource.
type Configuration struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec Spec `yaml:"spec"`
	// Source names where it was read from, for messages.
	Source string `yaml:"-"`
	// Ignored lists the spec sections present that this sidecar does not
	// implement.
	Ignored []string `yaml:"-"`
}

// Spec is a Configuration's spec. Tracing and access control are read; the
// other sections of Dapr's schema are accepted (see unsupported) and left
// alone.
type Spec struct {
	Tracing       *Tracing       `yaml:"tracing"`
	AccessControl *AccessControl `yaml:"accessControl"`
	// Features turn Dapr's feature gates on or off; HotReload is read
	// (see HotReload), the others are accepted without effect.
	Features []Feature `yaml:"features"`
	// HTTPPipeline is the middleware of the calls from the app to its
	// sidecar's APIs (HTTP and gRPC); AppHTTPPipeline that of the calls
	// for the app from other sidecars, before the app sees them.
	HTTPPipeline    *Pipeline `yaml:"httpPipeline"`
	AppHTTPPipeline *Pipeline `yaml:"appHttpPipeline"`
}

// Pipeline is spec.httpPipeline or spec.appHttpPipeline: middleware
// Components, by name and type, in the order calls go through them.
type Pipeline struct {
	Handlers []Handler `yaml:"handlers"`
}

// Handler names a middleware Component of a pipeline.
type Handler struct {
	Name    string `yaml:"name"`
	Type    string `yaml:"type"`
	Version string `yaml:"version"`
}

// PipelineHandlers is the handlers of the pipeline field
// ("httpPipeline" or "appHttpPipeline"); none when c is nil.
func (c *Configuration) PipelineHandlers(field string) []Handler {
	if c == nil {
		return nil
	}
	p := c.Spec.HTTPPipeline
	if field == "appHttpPipeline" {
		p = c.Spec.AppHTTPPipeline
	}
	if p == nil {
		return nil
	}
	return p.Handlers
}

// checkPipelines checks the handlers of both pipelines name a middleware
// type; that a Component of that name and type exists is the reloader's
// check.
func (c *Configuration) checkPipelines() error {
	for _, field := range []string{"httpPipeline", "appHttpPipeline"} {
		for i, h := range c.PipelineHandlers(field) {
			at := fmt.Sprintf("configuration %q: spec.%s.handlers[%d]", c.Metadata.Name, field, i)
			switch {
			case h.Name == "":
				return fmt.Errorf("%s.name is empty; name a middleware Component", at)
			case h.Type == "":
				return fmt.Errorf("%s.type is empty; give the type of Component %q (for example middleware.http.ratelimit)", at, h.Name)
			case !strings.HasPrefix(h.Type, "middleware.http."):
				return fmt.Errorf("%s.type %q is not a middleware type (middleware.http.*)", at, h.Type)
			case h.Version != "" && h.Version != "v1":
				return fmt.Errorf("%s.version %q is not supported; use v1", at, h.Version)
			}
		}
	}
	return nil
}

// Feature is one entry of spec.features.
type Feature struct {
	Name    string `yaml:"name"`
	Enabled bool   `yaml:"enabled"`
}

// FeatureHotReload is the feature that, as in Dapr, turns the reloading
// of changed resources on or off.
const FeatureHotReload = "HotReload"

// HotReload reports what spec.features says of FeatureHotReload: whether
// it is enabled, and whether it is there at all (nil c: not there).
func (c *Configuration) HotReload() (enabled, set bool) {
	if c == nil {
		return false, false
	}
	for _, f := range c.Spec.Features {
		if f.Name == FeatureHotReload {
			return f.Enabled, true
		}
	}
	return false, false
}

// AccessControl is spec.accessControl: which callers may invoke which
// methods of this app, enforced by this app's sidecar.
type AccessControl struct {
	DefaultAction string   `yaml:"defaultAction"`
	TrustDomain   string   `yaml:"trustDomain"`
	Policies      []Policy `yaml:"policies"`
}

// Policy is the access of one calling app.
type Policy struct {
	AppID         string      `yaml:"appId"`
	DefaultAction string      `yaml:"defaultAction"`
	TrustDomain   string      `yaml:"trustDomain"`
	Namespace     string      `yaml:"namespace"`
	Operations    []Operation `yaml:"operations"`
}

// Operation allows or denies a method path pattern (with * for one path
// segment and ** for any number) and HTTP verbs.
type Operation struct {
	Name     string   `yaml:"name"`
	HTTPVerb []string `yaml:"httpVerb"`
	Action   string   `yaml:"action"`
}

// Tracing is spec.tracing.
type Tracing struct {
	// SamplingRate is a string, as in Dapr: "1" samples every trace, "0"
	// turns tracing off.
	SamplingRate string  `yaml:"samplingRate"`
	Stdout       bool    `yaml:"stdout"`
	Zipkin       *Zipkin `yaml:"zipkin"`
	Otel         *Otel   `yaml:"otel"`
}

// Zipkin is spec.tracing.zipkin.
type Zipkin struct {
	EndpointAddress string `yaml:"endpointAddress"`
}

// Otel is spec.tracing.otel: an OTLP collector.
type Otel struct {
	EndpointAddress string `yaml:"endpointAddress"`
	IsSecure        bool   `yaml:"isSecure"`
	Protocol        string `yaml:"protocol"` // http (default) or grpc
}

// unsupported are the sections of Dapr's Configuration spec that load
// without effect.
var unsupported = []string{
	"api", "components",
	"logging", "metric", "metrics", "mtls", "nameResolution", "secrets", "wasm", "workflow",
}

// DefaultSamplingRate is Dapr's rate when a Configuration names none.
const DefaultSamplingRate = 0.0001

// Parse reads a Configuration from YAML; source names it in errors.
func Parse(b []byte, source string) (*Configuration, error) {
	var found *Configuration
	err := yamldoc.Each(b, source, "Configuration", func(doc int, node *yaml.Node) error {
		if found != nil {
			return fmt.Errorf("%s: holds more than one Configuration; give one file per Configuration", source)
		}
		c, err := decode(node, source)
		if err != nil {
			return fmt.Errorf("%s: document %d: %w", source, doc, err)
		}
		found = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, fmt.Errorf("%s: no document of kind Configuration", source)
	}
	return found, nil
}

func decode(node *yaml.Node, source string) (*Configuration, error) {
	// Take out the spec sections that are accepted but not implemented, so
	// that the strict decoder sees only what is.
	var ignored []string
	if spec := mappingValue(docRoot(node), "spec"); spec != nil && spec.Kind == yaml.MappingNode {
		kept := spec.Content[:0:0]
		for i := 0; i+1 < len(spec.Content); i += 2 {
			if k := spec.Content[i].Value; slices.Contains(unsupported, k) {
				ignored = append(ignored, k)
				continue
			}
			kept = append(kept, spec.Content[i], spec.Content[i+1])
		}
		spec.Content = kept
	}
	c := &Configuration{Source: source, Ignored: ignored}
	if err := yamldoc.Strict(node, c); err != nil {
		return nil, fmt.Errorf("%w (spec accepts tracing, accessControl, features, httpPipeline and appHttpPipeline; also, without effect: %s)", err, strings.Join(unsupported, ", "))
	}
	if c.APIVersion != "dapr.io/v1alpha1" {
		return nil, fmt.Errorf("configuration %q: apiVersion %q is not supported; use dapr.io/v1alpha1", c.Metadata.Name, c.APIVersion)
	}
	if _, err := c.TracingSettings(); err != nil {
		return nil, err
	}
	if err := c.checkAccessControl(); err != nil {
		return nil, err
	}
	if err := c.checkPipelines(); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, f := range c.Spec.Features {
		switch {
		case f.Name == "":
			return nil, fmt.Errorf("configuration %q: spec.features[%d].name is empty", c.Metadata.Name, i)
		case seen[f.Name]:
			return nil, fmt.Errorf("configuration %q: spec.features: %q appears twice", c.Metadata.Name, f.Name)
		case f.Name != FeatureHotReload:
			c.Ignored = append(c.Ignored, "features: "+f.Name)
		}
		seen[f.Name] = true
	}
	sort.Strings(c.Ignored)
	return c, nil
}

func docRoot(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return n.Content[0]
	}
	return n
}

func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// TracingSettings is the tracing part of a Configuration, checked.
type TracingSettings struct {
	// SamplingRate is in [0, 1]; 0 means tracing is off.
	SamplingRate float64
	// ZipkinEndpoint is the URL spans are POSTed to, or "".
	ZipkinEndpoint string
	// OTLPEndpoint is host:port (or a URL) of an OTLP collector, or "".
	OTLPEndpoint string
	OTLPInsecure bool
	OTLPProtocol string // "http" or "grpc"
	Stdout       bool
}

// Enabled reports whether any trace is sampled and exported.
func (t TracingSettings) Enabled() bool {
	return t.SamplingRate > 0 && (t.ZipkinEndpoint != "" || t.OTLPEndpoint != "" || t.Stdout)
}

// TracingSettings checks and returns the tracing settings. A Configuration
// with no tracing section, or none at all (c nil), traces nothing.
func (c *Configuration) TracingSettings() (TracingSettings, error) {
	var s TracingSettings
	if c == nil || c.Spec.Tracing == nil {
		return s, nil
	}
	t := c.Spec.Tracing
	name := c.Metadata.Name
	s.SamplingRate = DefaultSamplingRate
	if r := strings.TrimSpace(t.SamplingRate); r != "" {
		f, err := strconv.ParseFloat(r, 64)
		if err != nil || f < 0 || f > 1 {
			return s, fmt.Errorf("configuration %q: spec.tracing.samplingRate %q is not valid: give a number from \"0\" (tracing off) to \"1\" (every trace), as a string", name, t.SamplingRate)
		}
		s.SamplingRate = f
	}
	s.Stdout = t.Stdout
	if z := t.Zipkin; z != nil && z.EndpointAddress != "" {
		u, err := url.Parse(z.EndpointAddress)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return s, fmt.Errorf("configuration %q: spec.tracing.zipkin.endpointAddress %q is not an http(s) URL; for example http://zipkin.default.svc.cluster.local:9411/api/v2/spans", name, z.EndpointAddress)
		}
		s.ZipkinEndpoint = z.EndpointAddress
	}
	if o := t.Otel; o != nil && o.EndpointAddress != "" {
		s.OTLPEndpoint = o.EndpointAddress
		s.OTLPInsecure = !o.IsSecure
		switch o.Protocol {
		case "", "http":
			s.OTLPProtocol = "http"
		case "grpc":
			s.OTLPProtocol = "grpc"
		default:
			return s, fmt.Errorf("configuration %q: spec.tracing.otel.protocol %q is not valid; accepted: http, grpc", name, o.Protocol)
		}
	}
	return s, nil
}

// checkAccessControl refuses actions, verbs and operation names that are
// not valid, naming the policy.
func (c *Configuration) checkAccessControl() error {
	ac := c.Spec.AccessControl
	if ac == nil {
		return nil
	}
	bad := func(where, format string, args ...any) error {
		return fmt.Errorf("configuration %q: spec.accessControl%s: %s", c.Metadata.Name, where, fmt.Sprintf(format, args...))
	}
	action := func(where, a string, empty bool) error {
		if a == "allow" || a == "deny" || (a == "" && empty) {
			return nil
		}
		return bad(where, "action %q is not valid; accepted: allow, deny", a)
	}
	if err := action(".defaultAction", ac.DefaultAction, true); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, p := range ac.Policies {
		where := fmt.Sprintf(".policies[%d]", i)
		if p.AppID == "" {
			return bad(where, "appId is missing")
		}
		key := p.AppID + "/" + p.Namespace
		if seen[key] {
			return bad(where, "app %q (namespace %q) has two policies; merge them", p.AppID, p.Namespace)
		}
		seen[key] = true
		if err := action(where+".defaultAction", p.DefaultAction, true); err != nil {
			return err
		}
		for j, op := range p.Operations {
			w := fmt.Sprintf("%s.operations[%d]", where, j)
			if !strings.HasPrefix(op.Name, "/") {
				return bad(w, "name %q must be a method path starting with /, such as /orders/* or /admin/**", op.Name)
			}
			if err := action(w, op.Action, true); err != nil {
				return err
			}
			for _, v := range op.HTTPVerb {
				if v != "*" && !slices.Contains([]string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}, v) {
					return bad(w, "httpVerb %q is not valid; accepted: GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS, CONNECT, TRACE or *", v)
				}
			}
		}
	}
	return nil
}

// AccessControlSpec is spec.accessControl, or nil (also for a nil
// Configuration).
func (c *Configuration) AccessControlSpec() *AccessControl {
	if c == nil {
		return nil
	}
	return c.Spec.AccessControl
}
