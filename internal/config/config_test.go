package config

import (
	"fmt"
	"strings"
	"testing"
)

const appconfig = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: appconfig
spec:
  tracing:
    samplingRate: "1"
    zipkin:
      endpointAddress: "http://zipkin.default.svc.cluster.local:9411/api/v2/spans"
  metric:
    enabled: true
  features:
  - name: Resiliency
    enabled: true
`

func TestParseDaprConfiguration(t *testing.T) {
	c, err := Parse([]byte("kind: Component\n---\n"+appconfig), "appconfig.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.TracingSettings()
	if err != nil {
		t.Fatal(err)
	}
	if c.Metadata.Name != "appconfig" || s.SamplingRate != 1 || s.ZipkinEndpoint != "http://zipkin.default.svc.cluster.local:9411/api/v2/spans" || !s.Enabled() {
		t.Errorf("got %+v %+v", c.Metadata, s)
	}
	if strings.Join(c.Ignored, ",") != "features: Resiliency,metric" {
		t.Errorf("ignored sections %v", c.Ignored)
	}
}

func TestTracingDefaultsAndOff(t *testing.T) {
	var none *Configuration
	if s, err := none.TracingSettings(); err != nil || s.Enabled() {
		t.Errorf("no configuration: %+v %v", s, err)
	}
	c, err := Parse([]byte(strings.Replace(appconfig, `samplingRate: "1"`, `samplingRate: "0"`, 1)), "x")
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := c.TracingSettings(); s.Enabled() {
		t.Error(`samplingRate "0" leaves tracing on`)
	}
	c, err = Parse([]byte(strings.Replace(appconfig, `    samplingRate: "1"`+"\n", "", 1)), "x")
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := c.TracingSettings(); s.SamplingRate != DefaultSamplingRate {
		t.Errorf("default rate %v", s.SamplingRate)
	}
	c, err = Parse([]byte(strings.Replace(appconfig, "zipkin:\n      endpointAddress: \"http://zipkin.default.svc.cluster.local:9411/api/v2/spans\"", "otel:\n      endpointAddress: localhost:4318\n      isSecure: false", 1)), "x")
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := c.TracingSettings(); s.OTLPEndpoint != "localhost:4318" || !s.OTLPInsecure || s.OTLPProtocol != "http" || !s.Enabled() {
		t.Errorf("otel settings %+v", s)
	}
}

func TestBadConfigurationsNameTheField(t *testing.T) {
	for name, c := range map[string]struct{ from, to, want string }{
		"rate text":     {`samplingRate: "1"`, `samplingRate: "often"`, `spec.tracing.samplingRate "often"`},
		"rate above 1":  {`samplingRate: "1"`, `samplingRate: "2"`, `from "0" (tracing off) to "1"`},
		"rate negative": {`samplingRate: "1"`, `samplingRate: "-0.5"`, `samplingRate "-0.5"`},
		"typo":          {`samplingRate: "1"`, `samplingrate: "1"`, `samplingrate`},
		"unknown spec":  {`  metric:`, `  metrix:`, `metrix`},
		"what is read":  {`  metric:`, `  metrix:`, `spec accepts tracing, accessControl, features, httpPipeline and appHttpPipeline`},
		"zipkin url":    {`"http://zipkin.default.svc.cluster.local:9411/api/v2/spans"`, `zipkin:9411`, `spec.tracing.zipkin.endpointAddress "zipkin:9411"`},
		"otel protocol": {"zipkin:\n      endpointAddress: \"http://zipkin.default.svc.cluster.local:9411/api/v2/spans\"", "otel:\n      endpointAddress: x:1\n      protocol: udp", `protocol "udp"`},
		"api version":   {`dapr.io/v1alpha1`, `dapr.io/v2`, `apiVersion "dapr.io/v2"`},
	} {
		t.Run(name, func(t *testing.T) {
			doc := strings.Replace(appconfig, c.from, c.to, 1)
			if doc == appconfig {
				t.Fatalf("the case changes nothing")
			}
			_, err := Parse([]byte(doc), "bad.yaml")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	if _, err := Parse([]byte("kind: Component\n"), "only.yaml"); err == nil || !strings.Contains(err.Error(), "no document of kind Configuration") {
		t.Errorf("no configuration: %v", err)
	}
	if _, err := Parse([]byte(appconfig+"---\n"+appconfig), "two.yaml"); err == nil || !strings.Contains(err.Error(), "more than one") {
		t.Errorf("two configurations: %v", err)
	}
}

// spec.features: HotReload is read; other features load without effect.
func TestHotReloadFeature(t *testing.T) {
	if on, set := (*Configuration)(nil).HotReload(); on || set {
		t.Errorf("no configuration: %v %v", on, set)
	}
	c, err := Parse([]byte(appconfig), "x")
	if err != nil {
		t.Fatal(err)
	}
	if on, set := c.HotReload(); on || set {
		t.Errorf("no HotReload feature: %v %v", on, set)
	}
	for _, enabled := range []bool{false, true} {
		y := strings.Replace(appconfig, "  - name: Resiliency\n", fmt.Sprintf("  - name: HotReload\n    enabled: %v\n  - name: Resiliency\n", enabled), 1)
		c, err := Parse([]byte(y), "x")
		if err != nil {
			t.Fatal(err)
		}
		if on, set := c.HotReload(); on != enabled || !set {
			t.Errorf("HotReload enabled: %v: got %v %v", enabled, on, set)
		}
		if strings.Join(c.Ignored, ",") != "features: Resiliency,metric" {
			t.Errorf("ignored sections %v", c.Ignored)
		}
	}
	for name, y := range map[string]string{
		"no name": strings.Replace(appconfig, "  - name: Resiliency\n", "  - enabled: true\n", 1),
		"twice":   strings.Replace(appconfig, "  - name: Resiliency\n", "  - name: HotReload\n  - name: HotReload\n", 1),
		"typo":    strings.Replace(appconfig, "Resiliency\n    enabled: true\n", "Resiliency\n    enable: true\n", 1),
	} {
		if _, err := Parse([]byte(y), "x"); err == nil || !strings.Contains(err.Error(), "features") && !strings.Contains(err.Error(), "enable") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// spec.httpPipeline and spec.appHttpPipeline are read, in order; a handler
// without a name, or of a type that is not middleware, is refused naming
// the field.
func TestPipelines(t *testing.T) {
	const doc = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: limits
spec:
  httpPipeline:
    handlers:
    - name: a
      type: middleware.http.ratelimit
    - name: b
      type: middleware.http.ratelimit
      version: v1
  appHttpPipeline:
    handlers:
    - name: c
      type: middleware.http.ratelimit
`
	c, err := Parse([]byte(doc), "x")
	if err != nil {
		t.Fatal(err)
	}
	if h := c.PipelineHandlers("httpPipeline"); len(h) != 2 || h[0].Name != "a" || h[1].Name != "b" {
		t.Errorf("httpPipeline %+v", h)
	}
	if h := c.PipelineHandlers("appHttpPipeline"); len(h) != 1 || h[0].Name != "c" {
		t.Errorf("appHttpPipeline %+v", h)
	}
	if len(c.Ignored) != 0 {
		t.Errorf("ignored %v", c.Ignored)
	}
	if h := (*Configuration)(nil).PipelineHandlers("httpPipeline"); h != nil {
		t.Errorf("nil configuration: %v", h)
	}
	for name, tc := range map[string]struct{ from, to, want string }{
		"no name":    {"- name: a\n", "- name: \"\"\n", `spec.httpPipeline.handlers[0].name is empty`},
		"no type":    {"      type: middleware.http.ratelimit\n      version", "      version", `spec.httpPipeline.handlers[1].type is empty`},
		"not middle": {"- name: c\n      type: middleware.http.ratelimit", "- name: c\n      type: state.redis", `spec.appHttpPipeline.handlers[0].type "state.redis" is not a middleware type`},
		"version":    {"version: v1", "version: v2", `spec.httpPipeline.handlers[1].version "v2"`},
		"typo":       {"    handlers:\n    - name: c", "    handler:\n    - name: c", "handler"},
		"selector":   {"version: v1", "selector: {}", "selector"},
	} {
		y := strings.Replace(doc, tc.from, tc.to, 1)
		if y == doc {
			t.Fatalf("%s: the case changes nothing", name)
		}
		if _, err := Parse([]byte(y), "x"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
}
