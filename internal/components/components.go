// Package components reads Dapr Component resources (apiVersion
// dapr.io/v1alpha1, kind Component) from a folder of YAML files and builds
// the state stores (Build) and pub/sub brokers (BuildPubSub) they describe.
package components

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tandem-run/tandem/internal/middleware"
	"github.com/tandem-run/tandem/internal/yamldoc"
)

// Component is a Dapr Component resource.
type Component struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Meta     `yaml:"metadata"`
	Spec       Spec     `yaml:"spec"`
	Scopes     []string `yaml:"scopes"`
	Auth       any      `yaml:"auth"`
	// File is where the component was read from.
	File string `yaml:"-"`
}

// Meta is the resource's object metadata.
type Meta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// Spec is a component's spec.
type Spec struct {
	Type         string         `yaml:"type"`
	Version      string         `yaml:"version"`
	IgnoreErrors bool           `yaml:"ignoreErrors"`
	InitTimeout  string         `yaml:"initTimeout"`
	Metadata     []MetadataItem `yaml:"metadata"`
}

// MetadataItem is one name/value pair of spec.metadata.
type MetadataItem struct {
	Name         string        `yaml:"name"`
	Value        yaml.Node     `yaml:"value"`
	SecretKeyRef *SecretKeyRef `yaml:"secretKeyRef"`
}

// SecretKeyRef points a metadata value at a secret.
type SecretKeyRef struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
}

// Secrets reads the value a secretKeyRef points at: key (the ref's name
// when it names none) of the Kubernetes Secret name, in the component's
// namespace.
type Secrets func(ref SecretKeyRef) (string, error)

// ResolveMetadata returns spec.metadata as a map of strings, with each
// secretKeyRef's value read through secrets. With secrets nil, a
// secretKeyRef is an error saying where they work: in kubernetes mode,
// from the namespace's Secrets (Dapr's default secret store there).
func (c *Component) ResolveMetadata(secrets Secrets) (map[string]string, error) {
	m := make(map[string]string, len(c.Spec.Metadata))
	for i, it := range c.Spec.Metadata {
		if it.Name == "" {
			return nil, c.errorf("spec.metadata[%d].name is empty", i)
		}
		if _, dup := m[it.Name]; dup {
			return nil, c.errorf("spec.metadata %q appears twice", it.Name)
		}
		if ref := it.SecretKeyRef; ref != nil {
			if it.Value.Kind != 0 {
				return nil, c.errorf("spec.metadata %q has both value and secretKeyRef; give one", it.Name)
			}
			if ref.Name == "" {
				return nil, c.errorf("spec.metadata %q: secretKeyRef.name is empty; name the Secret", it.Name)
			}
			if secrets == nil {
				return nil, c.errorf("spec.metadata %q uses secretKeyRef, which reads Kubernetes Secrets in kubernetes mode only (no secret store components here): put the value in value", it.Name)
			}
			if store := c.SecretStore(); store != "" && store != KubernetesSecretStore {
				return nil, c.errorf("spec.metadata %q: auth.secretStore %q: only Dapr's default secret store, %q (the namespace's Secrets), is available", it.Name, store, KubernetesSecretStore)
			}
			v, err := secrets(*ref)
			if err != nil {
				return nil, c.errorf("spec.metadata %q: secretKeyRef: %v", it.Name, err)
			}
			m[it.Name] = v
			continue
		}
		switch it.Value.Kind {
		case 0:
			m[it.Name] = ""
		case yaml.ScalarNode:
			m[it.Name] = it.Value.Value
		default:
			return nil, c.errorf("spec.metadata %q: value must be a string, number or boolean", it.Name)
		}
	}
	return m, nil
}

// KubernetesSecretStore is the name of Dapr's default secret store in
// kubernetes mode: the Secrets of the component's namespace.
const KubernetesSecretStore = "kubernetes"

// SecretStore is auth.secretStore, or "".
func (c *Component) SecretStore() string {
	if a, ok := c.Auth.(map[string]any); ok {
		if s, ok := a["secretStore"].(string); ok {
			return s
		}
	}
	return ""
}

// SecretRefs lists the secretKeyRefs of spec.metadata.
func (c *Component) SecretRefs() []SecretKeyRef {
	var out []SecretKeyRef
	for _, it := range c.Spec.Metadata {
		if it.SecretKeyRef != nil {
			out = append(out, *it.SecretKeyRef)
		}
	}
	return out
}

// SecretKey is the key of the Secret that ref reads: its key, or its name
// when it gives none, as Dapr reads it.
func (r SecretKeyRef) SecretKey() string {
	if r.Key == "" {
		return r.Name
	}
	return r.Key
}

func (c *Component) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: component %q: %s", c.File, c.Metadata.Name, fmt.Sprintf(format, args...))
}

// Scoped returns the components whose scopes include appID (no scopes: all
// apps), as Dapr does.
func Scoped(comps []Component, appID string) []Component {
	var out []Component
	for _, c := range comps {
		if len(c.Scopes) == 0 || slices.Contains(c.Scopes, appID) {
			out = append(out, c)
		}
	}
	return out
}

// Parse reads the Components of YAML documents; path names where they come
// from in errors (a file, or a resource of the API server).
func Parse(b []byte, path string) ([]Component, error) {
	var out []Component
	err := yamldoc.Each(b, path, "Component", func(doc int, node *yaml.Node) error {
		c := Component{File: path}
		if err := yamldoc.Strict(node, &c); err != nil {
			return fmt.Errorf("%s: document %d: %w", path, doc, err)
		}
		if err := c.validate(); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (c *Component) validate() error {
	if c.APIVersion != "dapr.io/v1alpha1" {
		return c.errorf("apiVersion %q is not supported; use dapr.io/v1alpha1", c.APIVersion)
	}
	if c.Metadata.Name == "" {
		return fmt.Errorf("%s: component has no metadata.name", c.File)
	}
	if strings.ContainsAny(c.Metadata.Name, " /|") {
		return c.errorf("metadata.name must not contain spaces, '/' or '|'")
	}
	types := slices.Concat(StateTypes, PubSubTypes, MiddlewareTypes)
	switch {
	case c.Spec.Type == "":
		return c.errorf("spec.type is missing; accepted: %s", strings.Join(types, ", "))
	case c.Spec.Type == middleware.TypeOAuth2:
		return c.errorf("%s", oauth2Refused)
	case !slices.Contains(types, c.Spec.Type):
		return c.errorf("spec.type %q is not supported; accepted: %s", c.Spec.Type, strings.Join(types, ", "))
	}
	if err := c.checkVersion(); err != nil {
		return err
	}
	// Secrets are read when the store is built; here every value read
	// from one is taken to be there.
	_, err := c.ResolveMetadata(func(SecretKeyRef) (string, error) { return "", nil })
	return err
}

// Ignored lists the fields of comps that this sidecar accepts from Dapr's
// schema without acting on them, one entry per field, each naming where
// the component was read and the component:
//   - spec.initTimeout: stores connect on first use, so building them
//     waits on nothing a timeout could cut short;
//   - auth, unless it names Dapr's default secret store of kubernetes
//     mode ("kubernetes") and the sidecar is in that mode (namespace not
//     ""): there are no secret store components;
//   - metadata.namespace, when it is not namespace (the sidecar's; ""
//     in standalone mode, which has none): components are not left out
//     by namespace as daprd does; scopes choose the apps.
func Ignored(comps []Component, namespace string) []string {
	var out []string
	for _, c := range comps {
		add := func(field string) {
			out = append(out, fmt.Sprintf("%s: component %q: %s", c.File, c.Metadata.Name, field))
		}
		if c.Spec.InitTimeout != "" {
			add("spec.initTimeout")
		}
		if c.Auth != nil && (namespace == "" || c.SecretStore() != KubernetesSecretStore) {
			add("auth")
		}
		if ns := c.Metadata.Namespace; ns != "" && ns != namespace {
			add(fmt.Sprintf("metadata.namespace %q", ns))
		}
	}
	return out
}

// StateTypes are the state store types this sidecar builds.
var StateTypes = []string{"state.redis", "state.in-memory", "state.postgresql"}

// TypeVersion is the spec.version this sidecar builds of a component type:
// v2 for state.postgresql, v1 for the others.
func TypeVersion(typ string) string {
	if typ == "state.postgresql" {
		return "v2"
	}
	return "v1"
}

// checkVersion accepts the spec.version this sidecar builds of the type.
// daprd has two state.postgresql components of different table layouts,
// and takes one without a version to be v1; this sidecar has v2 only, so
// it names the version it wants rather than guess.
func (c *Component) checkVersion() error {
	v := c.Spec.Version
	if c.Spec.Type != "state.postgresql" {
		if v != "" && v != "v1" {
			return c.errorf("spec.version %q is not supported; use v1", v)
		}
		return nil
	}
	switch v {
	case "v2":
		return nil
	case "", "v1":
		what := "spec.version is missing, which daprd takes as v1"
		if v == "v1" {
			what = "spec.version v1 is not supported"
		}
		return c.errorf("%s: state.postgresql v1 is daprd's other table layout (value jsonb, isbinary, the etag from xmin), which this sidecar does not have; set spec.version: v2 (value bytea, etag uuid, daprd's layout since 1.13; the two cannot read each other's tables)", what)
	}
	return c.errorf("spec.version %q of state.postgresql is not supported; use v2", v)
}
