package components

import (
	"log/slog"
	"strings"

	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/pubsub/memory"
	"github.com/tandem-run/tandem/pkg/pubsub/redis"
)

// PubSubTypes are the pub/sub component types this sidecar builds.
var PubSubTypes = []string{"pubsub.redis", "pubsub.in-memory"}

// Env is what building a pub/sub component reads of the sidecar: the app
// id its topic access is decided for and, with the namespace and the pod
// name, what the templates of its metadata stand for ({appID},
// {namespace}, {podName} in consumerID, as daprd fills them).
type Env struct {
	AppID     string
	Namespace string // "" in standalone mode
	// PodName is the POD_NAME environment variable (the injector sets it);
	// "" when unset, and then {podName} is an error naming the field.
	PodName string
	// Logger is where brokers say what they see while serving (Redis
	// lost, back, a consumer group recreated); nil: nowhere.
	Logger *slog.Logger
}

// BuildPubSub builds the broker of the pub/sub Component c, its
// secretKeyRefs read through secrets (nil: a secretKeyRef is an error),
// with its topic access for env.AppID (pubsub.ParseAccess). A metadata
// field the type does not know is an error naming it and the fields it
// accepts. Nothing is connected: a broker connects on first use
// (pubsub.Pinger checks it can). The caller closes the broker it no
// longer uses (io.Closer).
func BuildPubSub(c Component, secrets Secrets, env Env) (pubsub.BrokerConfig, error) {
	md, err := c.ResolveMetadata(secrets)
	if err != nil {
		return pubsub.BrokerConfig{}, err
	}
	var b pubsub.Broker
	switch c.Spec.Type {
	case "pubsub.in-memory":
		cfg, err := memory.ParseMetadata(md)
		if err != nil {
			return pubsub.BrokerConfig{}, c.errorf("%v", err)
		}
		b = memory.New(cfg)
	case "pubsub.redis":
		cfg, err := redis.ParseMetadata(md, redis.Env{AppID: env.AppID, Namespace: env.Namespace, PodName: env.PodName})
		if err != nil {
			return pubsub.BrokerConfig{}, c.errorf("%v", err)
		}
		cfg.Logger = env.Logger
		b = redis.Open(c.Metadata.Name, cfg)
	default:
		return pubsub.BrokerConfig{}, c.errorf("spec.type %q is not a pub/sub type; accepted: %s", c.Spec.Type, strings.Join(PubSubTypes, ", "))
	}
	bc := pubsub.BrokerConfig{Name: c.Metadata.Name, Type: c.Spec.Type, Broker: b, Access: pubsub.ParseAccess(md, env.AppID)}
	if c.namesNamespace() {
		bc.TopicPrefix = env.Namespace
	}
	return bc, nil
}

// namesNamespace says whether a value of c's metadata, as written (not a
// secret's), holds {namespace}: daprd then scopes the component's topics to
// the namespace by prefixing them with it on the broker, and so do we, so
// that daprd and Tandem apps sharing such a component share its topics.
func (c Component) namesNamespace() bool {
	for _, it := range c.Spec.Metadata {
		if it.SecretKeyRef == nil && strings.Contains(it.Value.Value, "{namespace}") {
			return true
		}
	}
	return false
}
