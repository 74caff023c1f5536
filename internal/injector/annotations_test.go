package injector

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/tandem-run/tandem/internal/sidecarflag"
)

func annotated(kv ...string) map[string]string {
	a := map[string]string{AnnEnabled: "true", AnnAppID: "orders"}
	for i := 0; i+1 < len(kv); i += 2 {
		a[kv[i]] = kv[i+1]
	}
	return a
}

// TestNumericAnnotationRanges: every numeric annotation takes the range of
// the sidecar flag it becomes (and -1 where Dapr gives it a meaning), and
// refuses anything past it, however large, naming the annotation, the
// value and what is accepted.
func TestNumericAnnotationRanges(t *testing.T) {
	const huge = "99999999999999999999" // past int64
	cases := []struct {
		ann      string
		ok, bad  []string
		accepted string
	}{
		{AnnAppPort, []string{"1", "65535"}, []string{"0", "-1", "65536", huge, "http"}, "1 to 65535"},
		{AnnMetricsPort, []string{"1", "65535"}, []string{"0", "-1", "65536", huge}, "1 to 65535"},
		{"dapr.io/max-body-size", []string{"1", "16Mi", "1Ti", "1099511627776"}, []string{"0", "-1", "1099511627777", "1025Gi", "1e100", "999999Ei", huge + "Ei", "big"}, "a size from 1 byte to 1Ti"},
		{"dapr.io/http-max-request-size", []string{"-1", "1", "1048576"}, []string{"0", "-2", "1048577", huge, "16Mi"}, "-1 for the sidecar's default (4 MB), or 1 to 1048576 MB"},
		{"dapr.io/http-read-buffer-size", []string{"-1", "1", "8192"}, []string{"0", "-2", "8193", huge, "16Ki"}, "-1 for the sidecar's default (64 KB), or 1 to 8192 KB"},
		{"dapr.io/graceful-shutdown-seconds", []string{"-1", "0", "3600"}, []string{"-2", "3601", "9223372036854775807", huge, "5s"}, "-1 for the sidecar's default (5), or 0 to 3600 seconds"},
		{"dapr.io/app-max-concurrency", []string{"-1", "0", "1", "1048576"}, []string{"-2", "1048577", "9223372036854775807", huge}, "-1 or 0 for no bound, or 1 to 1048576"},
		{AnnCPURequest, []string{"1m", "0.5", "1024"}, []string{"0", "-1", "1025", "1e100", "999999Ei", "lots"}, "a positive quantity of CPUs up to 1024"},
		{AnnCPULimit, []string{"1m", "1024"}, []string{"1025", "1e100", "999999Ei"}, "a positive quantity of CPUs up to 1024"},
		{AnnMemoryRequest, []string{"1", "64Mi", "64Ti"}, []string{"0", "-1Mi", "65Ti", "1e100", "999999Ei"}, "a positive quantity of memory up to 64Ti"},
		{AnnMemoryLimit, []string{"1Gi", "64Ti"}, []string{"65Ti", "1e100", "999999Ei"}, "a positive quantity of memory up to 64Ti"},
	}
	for _, c := range cases {
		for _, v := range c.ok {
			t.Run(c.ann+"="+v, func(t *testing.T) {
				if _, err := ParseSpec(annotated(c.ann, v)); err != nil {
					t.Errorf("refused: %v", err)
				}
			})
		}
		for _, v := range c.bad {
			t.Run(c.ann+"="+v, func(t *testing.T) {
				_, err := ParseSpec(annotated(c.ann, v))
				if err == nil {
					t.Fatal("accepted")
				}
				for _, w := range []string{c.ann + " " + strconv.Quote(v), "accepted: " + c.accepted} {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
			})
		}
	}
}

// TestSizesBecomeSidecarFlags: Dapr's units (MB, KB) become the sidecar's
// flags in bytes; -1 leaves the sidecar's default and no flag.
func TestSizesBecomeSidecarFlags(t *testing.T) {
	cases := []struct {
		ann       map[string]string
		want, not []string
	}{
		{annotated("dapr.io/http-max-request-size", "16"), []string{"--max-body-size 16777216"}, nil},
		{annotated("dapr.io/max-body-size", "16Mi"), []string{"--max-body-size 16777216"}, nil},
		{annotated("dapr.io/max-body-size", "16Mi", "dapr.io/http-max-request-size", "-1"), []string{"--max-body-size 16777216"}, nil},
		{annotated("dapr.io/http-read-buffer-size", "32"), []string{"--read-buffer-size 32768"}, nil},
		{annotated("dapr.io/http-max-request-size", "-1", "dapr.io/http-read-buffer-size", "-1", "dapr.io/app-max-concurrency", "-1", "dapr.io/graceful-shutdown-seconds", "-1"), nil,
			[]string{"--max-body-size", "--read-buffer-size", "--app-max-concurrency", "--dapr-graceful-shutdown-seconds"}},
		{annotated("dapr.io/app-max-concurrency", "0"), nil, []string{"--app-max-concurrency"}},
		{annotated("dapr.io/graceful-shutdown-seconds", "0"), []string{"--dapr-graceful-shutdown-seconds 0"}, nil},
	}
	for _, c := range cases {
		s, err := ParseSpec(c.ann)
		if err != nil {
			t.Fatalf("%v: %v", c.ann, err)
		}
		args := strings.Join(testConfig.container(s, false).Args, " ")
		for _, w := range c.want {
			if !strings.Contains(args, w) {
				t.Errorf("%v: args %q lack %q", c.ann, args, w)
			}
		}
		for _, n := range c.not {
			if strings.Contains(args, n) {
				t.Errorf("%v: args %q have %q", c.ann, args, n)
			}
		}
	}
	if _, err := ParseSpec(annotated("dapr.io/max-body-size", "4Mi", "dapr.io/http-max-request-size", "4")); err == nil || !strings.Contains(err.Error(), "set the same limit; give one") {
		t.Errorf("both body sizes: %v", err)
	}
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

// TestAnnotationsReadTwice: the options the injector reads itself are rows
// of sidecarflag.Annotated (ParseSpec fills them from there, and checks the
// injector's own annotations beside two of them); its own annotations are
// not, so that none is also written as a flag.
func TestAnnotationsReadTwice(t *testing.T) {
	rows := map[string]bool{}
	for _, o := range sidecarflag.Annotated {
		rows[o.Annotation] = true
	}
	for _, a := range []string{AnnAppPort, AnnEnableMetrics, AnnMetricsPort, AnnBlockShutdown} {
		if !rows[a] {
			t.Errorf("%s is not in sidecarflag.Annotated", a)
		}
	}
	for _, a := range ownAnnotations {
		if rows[a] {
			t.Errorf("%s is the injector's own and a row of sidecarflag.Annotated", a)
		}
	}
}
