package components

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/pubsub/redis"
)

// pubsubYAML is a pub/sub Component of type typ named name, with metadata
// as name, value pairs.
func pubsubYAML(name, typ string, md ...string) []byte {
	b := []byte("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: " + name + "\nspec:\n  type: " + typ + "\n  version: v1\n  metadata:\n")
	for i := 0; i+1 < len(md); i += 2 {
		b = append(b, "  - name: "+md[i]+"\n    value: \""+md[i+1]+"\"\n"...)
	}
	return b
}

func closeBroker(bc pubsub.BrokerConfig) {
	if c, ok := bc.Broker.(io.Closer); ok {
		_ = c.Close()
	}
}

// A pub/sub Component builds its broker, with its topic access for the
// app; metadata its type does not know, or a bad value, is refused naming
// the field and the file.
func TestBuildPubSub(t *testing.T) {
	env := Env{AppID: "checkout"}
	for _, c := range []struct {
		name string
		yaml []byte
		want []string // in the error; none: it builds
	}{
		{"in-memory", pubsubYAML("pubsub", "pubsub.in-memory"), nil},
		{"in-memory with its fields", pubsubYAML("pubsub", "pubsub.in-memory", "concurrency", "4", "redeliverInterval", "2s", "maxPending", "10"), nil},
		{"scope fields", pubsubYAML("pubsub", "pubsub.in-memory", "allowedTopics", "orders", "publishingScopes", "checkout=orders", "subscriptionScopes", "checkout=", "protectedTopics", "audit"), nil},
		{"unknown field", pubsubYAML("pubsub", "pubsub.in-memory", "concurency", "4"), []string{"pubsub.yaml", `"concurency"`, "concurrency, redeliverInterval"}},
		{"bad value", pubsubYAML("pubsub", "pubsub.in-memory", "concurrency", "many"), []string{"pubsub.yaml", "concurrency", `"many"`, "1 to"}},
		{"a state store", memoryStoreYAML(), []string{"pubsub.yaml", "state.in-memory", "not a pub/sub type", "pubsub.redis, pubsub.in-memory"}},
		{"redis", pubsubYAML("pubsub", "pubsub.redis", "redisHost", "localhost:6379", "redisPassword", ""), nil},
		{"redis with scope fields", pubsubYAML("pubsub", "pubsub.redis", "redisHost", "localhost:6379", "allowedTopics", "orders"), nil},
		{"redis, unknown field", pubsubYAML("pubsub", "pubsub.redis", "redisHots", "localhost:6379"), []string{"pubsub.yaml", `"redisHots"`, "pubsub.redis field", "redisHost"}},
		{"redis, bad value", pubsubYAML("pubsub", "pubsub.redis", "redisHost", "localhost:6379", "queueDepth", "0"), []string{"pubsub.yaml", "queueDepth", `"0"`}},
		{"redis, {podName} without a pod name", pubsubYAML("pubsub", "pubsub.redis", "redisHost", "localhost:6379", "consumerID", "{podName}"), []string{"pubsub.yaml", "consumerID", "{podName}", "POD_NAME"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			comps, err := Parse(c.yaml, "pubsub.yaml")
			if err != nil {
				t.Fatal(err)
			}
			bc, err := BuildPubSub(comps[0], nil, env)
			if len(c.want) > 0 {
				if err == nil {
					closeBroker(bc)
					t.Fatal("built")
				}
				for _, w := range c.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %s", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer closeBroker(bc)
			if bc.Name != "pubsub" || bc.Type != comps[0].Spec.Type || bc.Broker == nil || bc.Access.AppID != "checkout" {
				t.Errorf("built %+v", bc)
			}
		})
	}
}

func memoryStoreYAML() []byte {
	return []byte("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: cache\nspec:\n  type: state.in-memory\n  version: v1\n")
}

// consumerID's templates are filled in from the sidecar: its app id, its
// namespace (as "<namespace>.<app id>", daprd's) and its pod name; without
// consumerID the group is the app id.
func TestBuildPubSubConsumerID(t *testing.T) {
	env := Env{AppID: "checkout", Namespace: "prod", PodName: "checkout-7d9f"}
	for consumerID, group := range map[string]string{
		"":                        "checkout",
		"{appID}-orders":          "checkout-orders",
		"{podName}":               "checkout-7d9f",
		"{namespace}":             "prod.checkout",
		"group-{appID}-{podName}": "group-checkout-checkout-7d9f",
	} {
		md := []string{"redisHost", "localhost:6379"}
		if consumerID != "" {
			md = append(md, "consumerID", consumerID)
		}
		comps, err := Parse(pubsubYAML("pubsub", "pubsub.redis", md...), "pubsub.yaml")
		if err != nil {
			t.Fatal(err)
		}
		bc, err := BuildPubSub(comps[0], nil, env)
		if err != nil {
			t.Fatalf("consumerID %q: %v", consumerID, err)
		}
		// The broker's consumer is named <group>-<pod name>-<random>.
		if c := bc.Broker.(*redis.Broker).Consumer(); !strings.HasPrefix(c, group+"-checkout-7d9f-") {
			t.Errorf("consumerID %q: consumer %q; want group %q", consumerID, c, group)
		}
		closeBroker(bc)
	}
}

// The scope fields become the broker's topic access for this app: a
// publish they do not allow is refused by the Service.
func TestBuildPubSubAccess(t *testing.T) {
	comps, err := Parse(pubsubYAML("pubsub", "pubsub.in-memory", "publishingScopes", "checkout=orders;shipping=audit"), "pubsub.yaml")
	if err != nil {
		t.Fatal(err)
	}
	svc := pubsub.NewService()
	defer svc.Close()
	for _, app := range []string{"checkout", "shipping"} {
		bc, err := BuildPubSub(comps[0], nil, Env{AppID: app})
		if err != nil {
			t.Fatal(err)
		}
		bc.Name = app
		if err := svc.Add(bc); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if err := svc.Publish(ctx, "checkout", &pubsub.Message{Topic: "orders"}); err != nil {
		t.Errorf("checkout publishing to orders: %v", err)
	}
	if err := svc.Publish(ctx, "shipping", &pubsub.Message{Topic: "orders"}); !errors.Is(err, pubsub.ErrForbidden) {
		t.Errorf("shipping publishing to orders: %v; want it forbidden", err)
	}
}

// A component whose metadata names {namespace} (in any field, as daprd
// looks) has its topics prefixed with the namespace on the broker.
func TestBuildPubSubNamespaceScoped(t *testing.T) {
	env := Env{AppID: "checkout", Namespace: "prod", PodName: "checkout-7d9f"}
	for _, tc := range []struct {
		typ    string
		md     []string
		prefix string
	}{
		{"pubsub.redis", []string{"redisHost", "localhost:6379"}, ""},
		{"pubsub.redis", []string{"redisHost", "localhost:6379", "consumerID", "{appID}"}, ""},
		{"pubsub.redis", []string{"redisHost", "localhost:6379", "consumerID", "{namespace}"}, "prod"},
		{"pubsub.redis", []string{"redisHost", "localhost:6379", "consumerID", "orders-{namespace}-{podName}"}, "prod"},
		{"pubsub.in-memory", nil, ""},
	} {
		comps, err := Parse(pubsubYAML("pubsub", tc.typ, tc.md...), "pubsub.yaml")
		if err != nil {
			t.Fatal(err)
		}
		bc, err := BuildPubSub(comps[0], nil, env)
		if err != nil {
			t.Fatalf("%s %v: %v", tc.typ, tc.md, err)
		}
		if bc.TopicPrefix != tc.prefix {
			t.Errorf("%s %v: topic prefix %q, want %q", tc.typ, tc.md, bc.TopicPrefix, tc.prefix)
		}
		closeBroker(bc)
	}
}
