package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-run/tandem/internal/injector"
)

// TestInjectedSidecarsParse runs the sidecar container of every injector
// golden file (internal/injector/testdata/inject) through parseOptions, with
// the environment the injector gives it: the injector can never produce
// flags this sidecar refuses, and the ports the pod declares are the ones
// the sidecar listens on.
func TestInjectedSidecarsParse(t *testing.T) {
	goldens, err := filepath.Glob("../../internal/injector/testdata/inject/*.golden.json")
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no injector golden files: %v", err)
	}
	parsed := 0
	for _, path := range goldens {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var g struct {
			Patch []struct {
				Path  string          `json:"path"`
				Value json.RawMessage `json:"value"`
			} `json:"patch"`
		}
		if err := json.Unmarshal(b, &g); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, op := range g.Patch {
			// A classic sidecar is added to the containers; a native one is
			// the first init container (a list of one, or at index 0).
			var c corev1.Container
			switch op.Path {
			case "/spec/containers/-", "/spec/initContainers/0":
				_ = json.Unmarshal(op.Value, &c)
			case "/spec/initContainers":
				var cs []corev1.Container
				if json.Unmarshal(op.Value, &cs) == nil && len(cs) == 1 {
					c = cs[0]
				}
			}
			if c.Name != injector.SidecarName {
				continue
			}
			parsed++
			t.Run(strings.TrimSuffix(filepath.Base(path), ".golden.json"), func(t *testing.T) {
				o, err := parseOptions(c.Args, injectedEnv(t, c.Env))
				if err != nil {
					t.Fatalf("the sidecar refuses the injector's arguments %q: %v", c.Args, err)
				}
				if o.Mode != "kubernetes" || o.Namespace != "default" {
					t.Errorf("mode %q, namespace %q; want kubernetes, default", o.Mode, o.Namespace)
				}
				listens := map[string]int{"dapr-http": o.HTTPPort, "dapr-grpc": o.GRPCPort, "dapr-internal": o.InternalPort, "dapr-public": o.PublicPort}
				if o.EnableMetrics {
					listens["dapr-metrics"] = o.MetricsPort
				}
				declared := map[string]int{}
				for _, p := range c.Ports {
					declared[p.Name] = int(p.ContainerPort)
				}
				for name, port := range listens {
					if declared[name] != port {
						t.Errorf("container port %s is %d; the sidecar listens on %d", name, declared[name], port)
					}
				}
				if len(declared) != len(listens) {
					t.Errorf("container ports %v; the sidecar listens on %v", declared, listens)
				}
				probes := []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe}
				if c.RestartPolicy != nil {
					// Native: the app starts once the sidecar itself serves.
					if c.StartupProbe == nil || c.StartupProbe.HTTPGet == nil || c.StartupProbe.HTTPGet.Path != "/v1.0/healthz/outbound" {
						t.Errorf("a native sidecar's startup probe %+v is not the outbound health route", c.StartupProbe)
					}
					probes = append(probes, c.StartupProbe)
				}
				for _, p := range probes {
					if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.IntValue() != o.PublicPort {
						t.Errorf("a probe does not ask the public port %d: %+v", o.PublicPort, p)
					}
				}
			})
		}
	}
	if parsed == 0 {
		t.Fatal("no golden file injects a sidecar container")
	}
}

// injectedEnv is the environment Kubernetes gives the container: its literal
// values, the pod's namespace (default) and name, and a token per Secret. A
// source it does not know fails the test, so that a new one is added here.
func injectedEnv(t *testing.T, env []corev1.EnvVar) func(string) string {
	t.Helper()
	m := map[string]string{}
	for _, e := range env {
		switch from := e.ValueFrom; {
		case from == nil:
			m[e.Name] = e.Value
		case from.FieldRef != nil && from.FieldRef.FieldPath == "metadata.namespace":
			m[e.Name] = "default"
		case from.FieldRef != nil && from.FieldRef.FieldPath == "metadata.name":
			m[e.Name] = "app-5d8f7c9b6-x2x4q"
		case from.SecretKeyRef != nil:
			m[e.Name] = "token-of-" + from.SecretKeyRef.Name
		default:
			t.Fatalf("env %s: a source this test does not know: %+v", e.Name, from)
		}
	}
	return func(k string) string { return m[k] }
}
