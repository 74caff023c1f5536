package pubsub

import (
	"fmt"
	"slices"
	"strings"
)

// Access is what a pub/sub component's metadata lets one app do with its
// topics, read as daprd 1.14 reads it (its pkg/scopes and
// IsOperationAllowed):
//
//   - allowedTopics "a,b": no app publishes or subscribes to any other
//     topic;
//   - protectedTopics "c": an app publishes or subscribes to c only when
//     its scope (below) names c;
//   - publishingScopes / subscriptionScopes "app1=a,b;app2=": an app
//     listed publishes (subscribes) only to the topics after its "=",
//     none when there are none; an app not listed is not limited by it.
//
// Names match in any case; spaces are ignored; an entry without "=" is
// ignored. The zero Access allows everything.
type Access struct {
	AppID string
	// Publishing and Subscribing are the topics of AppID's entries in
	// publishingScopes and subscriptionScopes; empty when it has none (no
	// limit). An entry naming no topic holds "", which no topic matches.
	Publishing, Subscribing []string
	Allowed, Protected      []string
}

// The metadata fields Access reads, as daprd names them.
const (
	MetadataPublishingScopes   = "publishingScopes"
	MetadataSubscriptionScopes = "subscriptionScopes"
	MetadataAllowedTopics      = "allowedTopics"
	MetadataProtectedTopics    = "protectedTopics"
)

// ParseAccess reads the Access of appID from a component's metadata.
func ParseAccess(md map[string]string, appID string) Access {
	return Access{
		AppID:       appID,
		Publishing:  scopedTopics(field(md, MetadataPublishingScopes), appID),
		Subscribing: scopedTopics(field(md, MetadataSubscriptionScopes), appID),
		Allowed:     topicList(field(md, MetadataAllowedTopics)),
		Protected:   topicList(field(md, MetadataProtectedTopics)),
	}
}

// Publish returns nil when the app may publish to topic, else an error
// wrapping ErrForbidden that says which field refuses it.
func (a Access) Publish(topic string) error {
	return a.check(topic, a.Publishing, MetadataPublishingScopes)
}

// Subscribe returns nil when the app may subscribe to topic, else an error
// wrapping ErrForbidden that says which field refuses it.
func (a Access) Subscribe(topic string) error {
	return a.check(topic, a.Subscribing, MetadataSubscriptionScopes)
}

func (a Access) check(topic string, scoped []string, scopeField string) error {
	if len(a.Allowed) > 0 && !slices.Contains(a.Allowed, topic) {
		return fmt.Errorf("topic %q is not allowed for app id %q: it is not in the component's %s: %w", topic, a.AppID, MetadataAllowedTopics, ErrForbidden)
	}
	protected := slices.Contains(a.Protected, topic)
	switch {
	case len(scoped) == 0 && !protected:
		return nil
	case slices.Contains(scoped, topic):
		return nil
	case len(scoped) == 0:
		return fmt.Errorf("topic %q is not allowed for app id %q: it is in the component's %s, and its %s give this app no access to it: %w", topic, a.AppID, MetadataProtectedTopics, scopeField, ErrForbidden)
	}
	return fmt.Errorf("topic %q is not allowed for app id %q: the component's %s limit this app to other topics: %w", topic, a.AppID, scopeField, ErrForbidden)
}

// field is md[name], the name matched in any case as daprd matches it.
func field(md map[string]string, name string) string {
	if v, ok := md[name]; ok {
		return v
	}
	for k, v := range md {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// scopedTopics are the topics of appID's entries in a scopes field
// ("app1=a,b;app2=c").
func scopedTopics(v, appID string) []string {
	var out []string
	for _, entry := range strings.Split(strings.ReplaceAll(v, " ", ""), ";") {
		parts := strings.Split(entry, "=")
		if len(parts) < 2 || parts[0] != appID {
			continue
		}
		for _, t := range strings.Split(parts[1], ",") {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// topicList is a list field ("a,b").
func topicList(v string) []string {
	if v == "" {
		return nil
	}
	var out []string
	for _, t := range strings.Split(strings.ReplaceAll(v, " ", ""), ",") {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}
