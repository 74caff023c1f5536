package injector

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func annotated(kv ...string) map[string]string {
	a := map[string]string{AnnEnabled: "true", AnnAppID: "orders"}
	for i := 0; i+1 < len(kv); i += 2 {
		a[kv[i]] = kv[i+1]
	}
	return a
}

// TestEnvRefusesOwnedVariables: dapr.io/env may set none of the variables
// the injector sets, each named in the refusal, with or without the
// Secret annotations.
func TestEnvRefusesOwnedVariables(t *testing.T) {
	for _, name := range []string{"DAPR_API_TOKEN", "APP_API_TOKEN", "NAMESPACE", "POD_NAME", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT"} {
		if !slices.Contains(ownedEnv, name) {
			t.Errorf("%s is not in ownedEnv %v", name, ownedEnv)
		}
	}
	for _, name := range ownedEnv {
		for _, a := range []map[string]string{
			annotated(AnnEnv, "A=1, "+name+"=x"),
			annotated(AnnEnv, name+"=", AnnAPITokenSecret, "api", AnnAppTokenSecret, "app"),
		} {
			_, err := ParseSpec(a)
			if err == nil || !strings.Contains(err.Error(), "dapr.io/env sets "+name+", which the injector sets itself") {
				t.Errorf("%v: %v", a, err)
			}
		}
	}
	// Names are case-sensitive, and other variables pass.
	if s, err := ParseSpec(annotated(AnnEnv, "namespace=x,GOMAXPROCS=2,DAPR_API_TOKEN_FILE=/t")); err != nil || len(s.Env) != 3 {
		t.Errorf("other variables: %v %v", s, err)
	}
	if _, err := ParseSpec(annotated(AnnEnv, "A=1,B=2,A=3")); err == nil || !strings.Contains(err.Error(), "dapr.io/env sets A twice") {
		t.Errorf("a variable twice: %v", err)
	}
}

// TestOwnedEnvCoversWhatIsInjected: every variable Inject sets on any
// container of any golden pod, but those dapr.io/env asked for, is in
// ownedEnv; so a variable added to the injection is refused in dapr.io/env
// from the start.
func TestOwnedEnvCoversWhatIsInjected(t *testing.T) {
	pods, _ := filepath.Glob("testdata/inject/*.yaml")
	seen := map[string]bool{}
	for _, in := range pods {
		b, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		var pod corev1.Pod
		if err := yaml.UnmarshalStrict(b, &pod); err != nil {
			t.Fatal(err)
		}
		ops, _, err := Inject(testConfig, &pod)
		if err != nil || len(ops) == 0 {
			continue
		}
		spec, _ := ParseSpec(pod.Annotations)
		asked := map[string]bool{}
		for _, kv := range spec.Env {
			asked[kv[0]] = true
		}
		var set []corev1.EnvVar
		for _, op := range ops {
			switch v := op.Value.(type) {
			case corev1.Container:
				set = append(set, v.Env...)
			case []corev1.EnvVar:
				set = append(set, v...)
			case corev1.EnvVar:
				set = append(set, v)
			}
		}
		for _, e := range set {
			seen[e.Name] = true
			if !asked[e.Name] && !slices.Contains(ownedEnv, e.Name) {
				t.Errorf("%s: Inject sets %s, which is not in ownedEnv %v", in, e.Name, ownedEnv)
			}
		}
	}
	for _, name := range ownedEnv {
		if !seen[name] {
			t.Errorf("no golden pod shows %s being injected", name)
		}
	}
}
