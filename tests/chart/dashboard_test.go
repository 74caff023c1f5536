package chart

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// render is the chart's objects with values set by --set.
func render(t *testing.T, set ...string) []unstructured.Unstructured {
	t.Helper()
	args := []string{"template", "tandem", chart, "--namespace", "tandem-system"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := run(t, helm(t), args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var objs []unstructured.Unstructured
	for doc := range strings.SplitSeq(out, "\n---\n") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatal(err)
		}
		if len(m) > 0 {
			objs = append(objs, unstructured.Unstructured{Object: m})
		}
	}
	return objs
}

// TestDashboard: the dashboard is off by default; dashboard.enabled=true
// adds its Deployment (--kubernetes), a ClusterIP Service, and a service
// account whose ClusterRole may get, list and watch pods and nothing else:
// no Secret, no write. No Service of the chart is of another type.
func TestDashboard(t *testing.T) {
	for _, o := range render(t) {
		if strings.Contains(o.GetName(), "dashboard") {
			t.Errorf("off by default, yet %s %s is rendered", o.GetKind(), o.GetName())
		}
	}
	objs := render(t, "dashboard.enabled=true", "zipkin.enabled=true", "redis.enabled=true", "tls.certManager.enabled=true")
	kinds := map[string]bool{}
	for _, o := range objs {
		if o.GetKind() == "Service" {
			if typ, _, _ := unstructured.NestedString(o.Object, "spec", "type"); typ != "" && typ != "ClusterIP" {
				t.Errorf("Service %s is of type %s; the chart's Services are ClusterIP", o.GetName(), typ)
			}
		}
		if o.GetName() != "tandem-dashboard" {
			continue
		}
		kinds[o.GetKind()] = true
		switch o.GetKind() {
		case "ClusterRole":
			rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
			if len(rules) != 1 {
				t.Fatalf("dashboard ClusterRole: %d rules, want the one on pods: %v", len(rules), rules)
			}
			r := rules[0].(map[string]any)
			if !slices.Equal(strs(r["apiGroups"]), []string{""}) || !slices.Equal(strs(r["resources"]), []string{"pods"}) ||
				!slices.Equal(strs(r["verbs"]), []string{"get", "list", "watch"}) {
				t.Errorf("dashboard ClusterRole rule %v: want get, list, watch on pods only", r)
			}
		case "Service":
			if typ, _, _ := unstructured.NestedString(o.Object, "spec", "type"); typ != "ClusterIP" {
				t.Errorf("dashboard Service of type %q, want ClusterIP", typ)
			}
		case "Deployment":
			cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			c := cs[0].(map[string]any)
			args := strs(c["args"])
			if image, _ := c["image"].(string); !strings.HasPrefix(image, "tandem/dashboard:") ||
				!slices.Contains(args, "--kubernetes") || !slices.Contains(args, "--zipkin-query=http://tandem-zipkin.tandem-system.svc.cluster.local:9411") {
				t.Errorf("dashboard container %v", c)
			}
			if c["env"] != nil || c["envFrom"] != nil || c["volumeMounts"] != nil {
				t.Errorf("the dashboard reads no Secret or token: env %v, envFrom %v, volumeMounts %v", c["env"], c["envFrom"], c["volumeMounts"])
			}
		}
	}
	for _, k := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"} {
		if !kinds[k] {
			t.Errorf("dashboard.enabled=true renders no %s tandem-dashboard", k)
		}
	}
	// No Role or ClusterRole of the dashboard's binding names Secrets.
	for _, o := range objs {
		if (o.GetKind() == "ClusterRoleBinding" || o.GetKind() == "RoleBinding") && o.GetName() != "tandem-dashboard" {
			subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
			for _, s := range subjects {
				if s.(map[string]any)["name"] == "tandem-dashboard" {
					t.Errorf("%s %s binds the dashboard's service account", o.GetKind(), o.GetName())
				}
			}
		}
	}
}

// TestDashboardJaegerQuery: dashboard.jaegerQuery reads that Jaeger query
// API (--jaeger-query) instead of the chart's Zipkin (a value that is not
// an http(s) URL is refused by the values' schema: TestSchemaRefusesBadValues).
func TestDashboardJaegerQuery(t *testing.T) {
	const url = "http://tandem-jaeger-query.tandem-system.svc.cluster.local:16686"
	var args []string
	for _, o := range render(t, "dashboard.enabled=true", "zipkin.enabled=true", "dashboard.jaegerQuery="+url) {
		if o.GetKind() == "Deployment" && o.GetName() == "tandem-dashboard" {
			cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			args = strs(cs[0].(map[string]any)["args"])
		}
	}
	if !slices.Contains(args, "--jaeger-query="+url) || slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--zipkin-query") }) {
		t.Errorf("dashboard args %q: want --jaeger-query=%s and no --zipkin-query", args, url)
	}
}

func strs(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
