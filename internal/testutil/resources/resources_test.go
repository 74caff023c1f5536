package resources_test

import (
	"testing"

	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/internal/config"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// The sidecar's own parsers read what the package writes, as it is meant.
func TestResourcesParse(t *testing.T) {
	comps, err := components.Parse(resources.RedisYAML("statestore", "127.0.0.1:6379", "dialTimeout", "300ms"), "statestore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(comps) != 1 {
		t.Fatalf("%d Components, want 1", len(comps))
	}
	md, err := comps[0].ResolveMetadata(nil)
	if err != nil || comps[0].Metadata.Name != "statestore" || comps[0].Spec.Type != "state.redis" ||
		md["redisHost"] != "127.0.0.1:6379" || md["dialTimeout"] != "300ms" {
		t.Errorf("Redis Component: %+v, metadata %v, %v", comps, md, err)
	}

	comps, err = components.Parse(resources.PubSubYAML("pubsub", "pubsub.in-memory", "allowedTopics", "orders"), "pubsub.yaml")
	if err != nil || len(comps) != 1 {
		t.Fatalf("pub/sub Component: %v, %v", comps, err)
	}
	if md, err := comps[0].ResolveMetadata(nil); err != nil || comps[0].Spec.Type != "pubsub.in-memory" || md["allowedTopics"] != "orders" {
		t.Errorf("pub/sub Component: %+v, metadata %v, %v", comps, md, err)
	}
	if _, err := components.Parse(resources.PubSubYAML("pubsub", "pubsub.in-memory"), "pubsub.yaml"); err != nil {
		t.Errorf("pub/sub Component without metadata: %v", err)
	}

	c, err := config.Parse(resources.ZipkinYAML("appconfig", "http://127.0.0.1:9411/api/v2/spans"), "appconfig.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.TracingSettings()
	if err != nil || c.Metadata.Name != "appconfig" || s.SamplingRate != 1 || s.ZipkinEndpoint != "http://127.0.0.1:9411/api/v2/spans" {
		t.Errorf("Zipkin Configuration %q: %+v, %v", c.Metadata.Name, s, err)
	}
}
