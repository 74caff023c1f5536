// Package chart tests the Helm chart in charts/tandem with the real helm:
// lint, rendering against golden files, and the values schema. Installing
// it into a real API server is in tests/e2e.
package chart

import (
	"bytes"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/internal/testutil/toolbin"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata")

const chart = "../../charts/tandem"

func helm(t *testing.T) string {
	t.Helper()
	return toolbin.Path(t, "helm")
}

func run(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func cases(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/*.values.yaml")
	if err != nil || len(files) == 0 {
		t.Fatal("no testdata/*.values.yaml")
	}
	return files
}

func TestLint(t *testing.T) {
	h := helm(t)
	for _, values := range cases(t) {
		if out, err := run(t, h, "lint", "--strict", chart, "-f", values); err != nil {
			t.Errorf("helm lint -f %s: %v\n%s", values, err, out)
		}
	}
}

// TestTemplateGolden renders the chart with each testdata/<case>.values.yaml
// and compares with <case>.golden.yaml; go test -update rewrites them, and a
// golden file without its values fails. Every document must also be
// well-formed (no duplicate keys) with an apiVersion, kind and name.
func TestTemplateGolden(t *testing.T) {
	h := helm(t)
	want := map[string]bool{}
	for _, values := range cases(t) {
		name := strings.TrimSuffix(filepath.Base(values), ".values.yaml")
		golden := filepath.Join("testdata", name+".golden.yaml")
		want[golden] = true
		t.Run(name, func(t *testing.T) {
			out, err := run(t, h, "template", "tandem", chart, "--namespace", "tandem-system", "-f", values)
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, out)
			}
			for i, doc := range strings.Split(out, "\n---\n") {
				if strings.TrimSpace(doc) == "" || strings.TrimSpace(doc) == "---" {
					continue
				}
				var m map[string]any
				if err := yaml.UnmarshalStrict([]byte(doc), &m); err != nil {
					t.Errorf("document %d is not well-formed: %v\n%s", i, err, doc)
					continue
				}
				u := unstructured.Unstructured{Object: m}
				if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
					t.Errorf("document %d lacks apiVersion, kind or name:\n%s", i, doc)
				}
			}
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			exp, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -update creates it)", err)
			}
			if string(exp) != out {
				t.Errorf("helm template differs from %s (go test -update rewrites it):\n%s", golden, out)
			}
		})
	}
	goldens, _ := filepath.Glob("testdata/*.golden.yaml")
	for _, g := range goldens {
		if !want[g] {
			t.Errorf("stale golden file %s: its values file is gone; delete it", g)
		}
	}
}

// TestSchemaRefusesBadValues: a bad value fails at helm install (template)
// with a message naming it.
func TestSchemaRefusesBadValues(t *testing.T) {
	h := helm(t)
	for _, c := range []struct{ set, want string }{
		{"webhook.failurePolicy=Sometimes", "failurePolicy"},
		{"injector.replicas=0", "replicas"},
		{"injector.port=80", "port"},
		{"sidecar.resources.requests.memory=lots", "memory"},
		{"tracing.samplingRate=often", "samplingRate"},
		{"redis.externalAddress=redis", "externalAddress"},
		{"appNamespaces[0]=Not_A_Namespace", "appNamespaces"},
		{"injector.logLevel=loud", "logLevel"},
		{"zipkin.enable=true", "enable"},
		{"sidecar.native=sometimes", "native"},
		{"redis.sentinel.address=sentinel", "address"},
		{"redis.cluster.address=a:1 b:2", "address"},
		{"redis.sentinel.masterName=", "masterName"},
		{"redis.passwordSecret.name=Redis_Secret", "name"},
		{"postgresql.connectionStringSecret.name=pg secret", "name"},
		{"postgresql.tablePrefix=drop;", "tablePrefix"},
		{"postgresql.connectionString=host=db", "connectionString"},
		{"dashboard.port=80", "port"},
		{"dashboard.enable=true", "enable"},
		{"dashboard.jaegerQuery=jaeger:16686", "jaegerQuery"},
	} {
		out, err := run(t, h, "template", "tandem", chart, "--set", c.set)
		if err == nil || !strings.Contains(out, c.want) || !strings.Contains(out, "schema") {
			t.Errorf("--set %s: err %v, output %q; want a schema error naming %q", c.set, err, out, c.want)
		}
	}
}

// TestComponents: the Components the chart renders for each case are ones
// the sidecar builds (internal/components, as it does in kubernetes mode),
// with the connection each case's values describe, and every Secret they
// read through secretKeyRef is one the sidecars' Role lets them get.
func TestComponents(t *testing.T) {
	h := helm(t)
	for _, c := range []struct {
		values string
		want   map[string]map[string]string // Component "<namespace>/<name> <type>": its metadata
	}{
		{"redis-sentinel", map[string]map[string]string{
			"default/statestore state.redis": {"redisHost": "redis-sentinel.redis.svc.cluster.local:26379", "failover": "true", "sentinelMasterName": "mymaster", "redisPassword": "secret redis/password"},
			"default/pubsub pubsub.redis":    {"redisHost": "redis-sentinel.redis.svc.cluster.local:26379", "failover": "true", "sentinelMasterName": "mymaster", "redisPassword": "secret redis/password"},
			"shop/statestore state.redis":    {"redisHost": "redis-sentinel.redis.svc.cluster.local:26379", "failover": "true", "sentinelMasterName": "mymaster", "redisPassword": "secret redis/password"},
			"shop/pubsub pubsub.redis":       {"redisHost": "redis-sentinel.redis.svc.cluster.local:26379", "failover": "true", "sentinelMasterName": "mymaster", "redisPassword": "secret redis/password"},
		}},
		{"redis-cluster", map[string]map[string]string{
			"default/statestore state.redis": {"redisHost": "redis-cluster.redis.svc.cluster.local:6379", "redisType": "cluster", "redisPassword": "secret redis-cluster/redis-password"},
			"default/pubsub pubsub.redis":    {"redisHost": "redis-cluster.redis.svc.cluster.local:6379", "redisType": "cluster", "redisPassword": "secret redis-cluster/redis-password"},
		}},
		{"postgresql", map[string]map[string]string{
			"default/statestore state.postgresql": {"connectionString": "secret postgres/connectionString", "tablePrefix": "orders_"},
			"default/pubsub pubsub.redis":         {"redisHost": "tandem-redis.tandem-system.svc.cluster.local:6379"},
		}},
	} {
		t.Run(c.values, func(t *testing.T) {
			out, err := run(t, h, "template", "tandem", chart, "--namespace", "tandem-system", "-f", filepath.Join("testdata", c.values+".values.yaml"))
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, out)
			}
			allowed := map[string][]string{} // namespace: Secrets its sidecars may get
			var docs []string
			var objs []unstructured.Unstructured
			for _, doc := range strings.Split(out, "\n---\n") {
				var m map[string]any
				if err := yaml.Unmarshal([]byte(doc), &m); err != nil || m == nil {
					continue
				}
				u := unstructured.Unstructured{Object: m}
				docs, objs = append(docs, doc), append(objs, u)
				if u.GetKind() == "Role" && strings.HasSuffix(u.GetName(), "-sidecar-secrets") {
					rules, _, _ := unstructured.NestedSlice(m, "rules")
					for _, r := range rules {
						names, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "resourceNames")
						allowed[u.GetNamespace()] = append(allowed[u.GetNamespace()], names...)
					}
				}
			}
			got := map[string]map[string]string{}
			for i, u := range objs {
				doc := docs[i]
				switch {
				case u.GetKind() == "Component":
					comps, err := components.Parse([]byte(doc), "rendered.yaml")
					if err != nil || len(comps) != 1 {
						t.Fatalf("the sidecar cannot read the rendered Component: %v\n%s", err, doc)
					}
					comp := comps[0]
					md := map[string]string{}
					secrets := func(ref components.SecretKeyRef) (string, error) {
						for _, it := range comp.Spec.Metadata {
							if it.SecretKeyRef != nil && *it.SecretKeyRef == ref {
								md[it.Name] = "secret " + ref.Name + "/" + ref.Key
							}
						}
						if !slices.Contains(allowed[u.GetNamespace()], ref.Name) {
							t.Errorf("%s/%s reads Secret %s, which no Role lets the sidecars of %s get: %v", u.GetNamespace(), u.GetName(), ref.Name, u.GetNamespace(), allowed)
						}
						if ref.Key == "connectionString" {
							return "host=db.example user=app password=pw dbname=state", nil
						}
						return "pw", nil
					}
					var closer io.Closer
					if strings.HasPrefix(comp.Spec.Type, "pubsub.") {
						b, err := components.BuildPubSub(comp, secrets, components.Env{AppID: "app", Namespace: u.GetNamespace()})
						if err != nil {
							t.Fatalf("the sidecar refuses the rendered Component: %v\n%s", err, doc)
						}
						closer, _ = b.Broker.(io.Closer)
					} else {
						sc, err := components.Build(comp, secrets)
						if err != nil {
							t.Fatalf("the sidecar refuses the rendered Component: %v\n%s", err, doc)
						}
						closer, _ = sc.Store.(io.Closer)
					}
					if closer != nil {
						_ = closer.Close()
					}
					for _, it := range comp.Spec.Metadata {
						if it.SecretKeyRef == nil {
							md[it.Name] = it.Value.Value
						}
					}
					got[u.GetNamespace()+"/"+u.GetName()+" "+comp.Spec.Type] = md
				}
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("rendered Components:\n%v\nwant:\n%v", got, c.want)
			}
		})
	}
}

// TestRedisValuesConflict: the values name one Redis, and the pubsub
// Component needs one; otherwise helm template fails saying which values.
func TestRedisValuesConflict(t *testing.T) {
	h := helm(t)
	for _, c := range []struct {
		set  []string
		want string
	}{
		{[]string{"redis.enabled=true", "redis.cluster.address=redis:6379"}, "set one of redis.enabled, redis.externalAddress, redis.sentinel.address and redis.cluster.address"},
		{[]string{"redis.externalAddress=redis:6379", "redis.sentinel.address=sentinel:26379"}, "set one of redis.enabled"},
		{[]string{"redis.pubsub=true"}, "redis.pubsub: the pubsub Component needs a Redis"},
	} {
		args := []string{"template", "tandem", chart}
		for _, s := range c.set {
			args = append(args, "--set", s)
		}
		out, err := run(t, h, args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("--set %v: err %v, output %q; want an error saying %q", c.set, err, out, c.want)
		}
	}
}
