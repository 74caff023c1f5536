package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"

	"gopkg.in/yaml.v3"
)

// Resource is a kind of dapr.io object of a namespace.
type Resource struct {
	Kind   string // Component
	Plural string // components
	// Version is the version of dapr.io listed and watched; "":
	// v1alpha1.
	Version string
}

// The kinds of object the sidecar reads.
var (
	Components     = Resource{Kind: "Component", Plural: "components"}
	Configurations = Resource{Kind: "Configuration", Plural: "configurations"}
	Resiliencies   = Resource{Kind: "Resiliency", Plural: "resiliencies"}
	// Subscriptions are read in their stored version, v2alpha1: the API
	// server does not convert v1alpha1's route to it (daprd's operator
	// does).
	Subscriptions = Resource{Kind: "Subscription", Plural: "subscriptions", Version: "v2alpha1"}
)

// Object is an object of the API server as the sidecar's loaders read it.
type Object struct {
	Kind, Name, ResourceVersion string
	// YAML is the object without what the loaders do not read: status,
	// managedFields, uid, annotations (kubectl's
	// last-applied-configuration) and the like.
	YAML []byte
}

// Key names the object in messages: "Component default/statestore".
func (o Object) Key(namespace string) string { return o.Kind + " " + namespace + "/" + o.Name }

// resource is a dapr.io object as the API server returns it; only what the
// sidecar's own loaders accept is passed on.
type resource struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name            string            `json:"name"`
		Namespace       string            `json:"namespace"`
		Labels          map[string]string `json:"labels,omitempty"`
		Annotations     map[string]string `json:"annotations,omitempty"`
		ResourceVersion string            `json:"resourceVersion,omitempty"`
	} `json:"metadata"`
	Spec   json.RawMessage `json:"spec,omitempty"`
	Scopes []string        `json:"scopes,omitempty"`
	Auth   json.RawMessage `json:"auth,omitempty"`
}

func (r resource) object(kind string) (Object, error) {
	o := Object{Kind: kind, Name: r.Metadata.Name, ResourceVersion: r.Metadata.ResourceVersion}
	r.Kind = kind // lists leave it out of their items
	r.Metadata.Annotations = nil
	r.Metadata.ResourceVersion = ""
	b, err := json.Marshal(r)
	if err != nil {
		return Object{}, err
	}
	o.YAML, err = jsonToYAML(b)
	return o, err
}

// jsonToYAML writes JSON as block-style YAML, so that errors about an
// object read from the API server name lines as they would in its file.
// JSON is YAML: yaml.v3 reads it as flow collections and quoted
// strings; cleared of that style, it writes blocks, and quotes only a
// string that would otherwise read as another type.
func jsonToYAML(b []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, err
	}
	var plain func(*yaml.Node)
	plain = func(n *yaml.Node) {
		n.Style = 0
		for _, c := range n.Content {
			plain(c)
		}
	}
	plain(&n)
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// path is where the namespace's objects of res are.
func (c *Client) path(res Resource) string {
	v := res.Version
	if v == "" {
		v = "v1alpha1"
	}
	return "/apis/dapr.io/" + v + "/namespaces/" + url.PathEscape(c.namespace) + "/" + res.Plural
}

// Namespace is the namespace the Client reads.
func (c *Client) Namespace() string { return c.namespace }

// List lists the namespace's objects of res (those named name, when not
// ""), and returns them with the list's resourceVersion, from which a
// watch goes on.
func (c *Client) List(ctx context.Context, res Resource, name string) ([]Object, string, error) {
	path := c.path(res)
	if name != "" {
		path += "?fieldSelector=" + url.QueryEscape("metadata.name="+name)
	}
	var list struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Items []resource `json:"items"`
	}
	if err := c.get(ctx, path, &list); err != nil {
		if errors.Is(err, errNotFound) {
			return nil, "", fmt.Errorf("%w: is the %s.dapr.io CRD installed? (the chart installs it)", err, res.Plural)
		}
		return nil, "", err
	}
	out := make([]Object, 0, len(list.Items))
	for _, it := range list.Items {
		o, err := it.object(res.Kind)
		if err != nil {
			return nil, "", err
		}
		out = append(out, o)
	}
	return out, list.Metadata.ResourceVersion, nil
}

// IsNotFound reports whether err is the API server's 404.
func IsNotFound(err error) bool { return errors.Is(err, errNotFound) }

// IsForbidden reports whether err is the API server's 401 or 403.
func IsForbidden(err error) bool { return errors.Is(err, errForbidden) }

// IsTransient reports whether err may pass if the request is made again: the
// server could not be reached, is busy (429) or failing (5xx).
func IsTransient(err error) bool { return errors.Is(err, errTransient) }

// Secret is a Secret of the namespace: its data and resourceVersion.
type Secret struct {
	Name, ResourceVersion string
	Data                  map[string][]byte
}

// Secret gets the namespace's Secret name (get, never list or watch: the
// sidecar's RBAC names the Secrets it may read).
func (c *Client) Secret(ctx context.Context, name string) (Secret, error) {
	var s struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Data map[string][]byte `json:"data"` // base64 in JSON
	}
	if err := c.get(ctx, "/api/v1/namespaces/"+url.PathEscape(c.namespace)+"/secrets/"+url.PathEscape(name), &s); err != nil {
		switch {
		case errors.Is(err, errNotFound):
			return Secret{}, fmt.Errorf("Secret %q not found in namespace %q: %w", name, c.namespace, err)
		case errors.Is(err, errForbidden):
			return Secret{}, fmt.Errorf("Secret %q: the sidecar's service account may not get it; with the chart, list it in sidecar.secretNames (a Role with get on the Secrets named there): %w", name, err)
		}
		return Secret{}, err
	}
	return Secret{Name: name, ResourceVersion: s.Metadata.ResourceVersion, Data: s.Data}, nil
}
