package subscribe

import (
	"fmt"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/tandem-run/tandem/internal/yamldoc"
)

// Declarative subscriptions: the Subscription resources of Dapr, in their
// two versions.
//
// dapr.io/v2alpha1:
//
//	spec: {pubsubname, topic, routes: {rules: [{match, path}], default},
//	       deadLetterTopic, metadata, bulkSubscribe}
//	scopes: [app IDs]
//
// dapr.io/v1alpha1:
//
//	spec: {pubsubname, topic, route, deadLetterTopic, metadata, bulkSubscribe}
//	scopes: [app IDs]
//
// A field neither has is refused, as a rule that does not compile and a
// subscription the subscriber could not run.

// APIVersions are the apiVersions of Subscription resources accepted.
var APIVersions = []string{"dapr.io/v2alpha1", "dapr.io/v1alpha1"}

// Declared is a Subscription resource.
type Declared struct {
	Name      string
	Namespace string
	// Scopes are the IDs of the apps it applies to; none: all.
	Scopes []string
	Subscription
}

// AppliesTo tells whether d applies to the app appID: it has no scopes, or
// they name appID.
func (d Declared) AppliesTo(appID string) bool {
	return len(d.Scopes) == 0 || slices.Contains(d.Scopes, appID)
}

// resource is a Subscription resource of the version whose spec is S.
type resource[S any] struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec   S        `yaml:"spec"`
	Scopes []string `yaml:"scopes"`
}

type specV2 struct {
	PubsubName string `yaml:"pubsubname"`
	Topic      string `yaml:"topic"`
	Routes     struct {
		Rules []struct {
			Match string `yaml:"match"`
			Path  string `yaml:"path"`
		} `yaml:"rules"`
		Default string `yaml:"default"`
	} `yaml:"routes"`
	DeadLetterTopic string            `yaml:"deadLetterTopic"`
	Metadata        map[string]string `yaml:"metadata"`
	BulkSubscribe   bulkYAML          `yaml:"bulkSubscribe"`
}

type specV1 struct {
	PubsubName      string            `yaml:"pubsubname"`
	Topic           string            `yaml:"topic"`
	Route           string            `yaml:"route"`
	DeadLetterTopic string            `yaml:"deadLetterTopic"`
	Metadata        map[string]string `yaml:"metadata"`
	BulkSubscribe   bulkYAML          `yaml:"bulkSubscribe"`
}

type bulkYAML struct {
	Enabled            bool  `yaml:"enabled"`
	MaxMessagesCount   int32 `yaml:"maxMessagesCount"`
	MaxAwaitDurationMs int32 `yaml:"maxAwaitDurationMs"`
}

// ParseResources reads the Subscription documents of YAML b; source names
// it in errors. Each is checked as the subscriber runs it, its rules
// compiled, whichever apps it applies to (see Declared.AppliesTo).
// The first problem refuses b whole: an unknown field, an apiVersion
// other than APIVersions, a rule that does not compile (named by its
// index from 0 and its match), a subscription that cannot run.
func ParseResources(b []byte, source string) ([]Declared, error) {
	var out []Declared
	err := yamldoc.Each(b, source, "Subscription", func(doc int, node *yaml.Node) error {
		var head struct {
			APIVersion string `yaml:"apiVersion"`
			Metadata   struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
		}
		if err := node.Decode(&head); err != nil {
			return fmt.Errorf("%s: document %d: %w", source, doc, err)
		}
		name := fmt.Sprintf("%s: subscription %q", source, head.Metadata.Name)
		if head.Metadata.Name == "" {
			return fmt.Errorf("%s: document %d: subscription without metadata.name", source, doc)
		}
		s := Subscription{Type: Declarative}
		var meta resource[struct{}]
		switch head.APIVersion {
		case "dapr.io/v2alpha1":
			var r resource[specV2]
			if err := yamldoc.Strict(node, &r); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			sp := r.Spec
			s.PubsubName, s.Topic, s.DeadLetterTopic, s.Metadata = sp.PubsubName, sp.Topic, sp.DeadLetterTopic, sp.Metadata
			for _, rl := range sp.Routes.Rules {
				s.Rules = append(s.Rules, Rule{Match: rl.Match, Path: rl.Path})
			}
			if sp.Routes.Default != "" {
				s.Rules = append(s.Rules, Rule{Path: sp.Routes.Default})
			}
			s.BulkSubscribe = BulkSubscribe(sp.BulkSubscribe)
			meta.Metadata, meta.Scopes = r.Metadata, r.Scopes
		case "dapr.io/v1alpha1":
			var r resource[specV1]
			if err := yamldoc.Strict(node, &r); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			sp := r.Spec
			s.PubsubName, s.Topic, s.DeadLetterTopic, s.Metadata = sp.PubsubName, sp.Topic, sp.DeadLetterTopic, sp.Metadata
			if sp.Route != "" {
				s.Rules = []Rule{{Path: sp.Route}}
			}
			s.BulkSubscribe = BulkSubscribe(sp.BulkSubscribe)
			meta.Metadata, meta.Scopes = r.Metadata, r.Scopes
		default:
			return fmt.Errorf("%s: apiVersion %q is not supported; use dapr.io/v2alpha1 or dapr.io/v1alpha1", name, head.APIVersion)
		}
		if _, err := CompileRoutes(s.Rules); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := s.Check(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, Declared{Name: meta.Metadata.Name, Namespace: meta.Metadata.Namespace, Scopes: meta.Scopes, Subscription: s})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
