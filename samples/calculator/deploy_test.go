package calculator

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/internal/config"
)

// The Kubernetes manifests load in the sidecar as they are: the Component
// and Configuration through the sidecar's own loaders, and the five
// Deployments carry the annotations the injector reads.
func TestDeployManifests(t *testing.T) {
	comps, err := components.LoadFile("deploy/statestore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(comps) != 1 || comps[0].Metadata.Name != "statestore" || comps[0].Spec.Type != "state.redis" {
		t.Errorf("statestore.yaml: %+v", comps)
	}
	conf, err := config.LoadFile("deploy/appconfig.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := conf.TracingSettings()
	if err != nil || conf.Metadata.Name != "appconfig" || tr.SamplingRate != 1 ||
		tr.ZipkinEndpoint != "http://zipkin.default.svc.cluster.local:9411/api/v2/spans" {
		t.Errorf("appconfig.yaml: %+v %+v %v", conf.Metadata, tr, err)
	}

	want := map[string]string{"addapp": "6000", "subtractapp": "6000", "multiplyapp": "6000", "divideapp": "6000", "calculator-front-end": "8080"}
	files, _ := filepath.Glob("deploy/*.yaml")
	seen := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var d struct {
				Kind string
				Spec struct {
					Template struct {
						Metadata struct {
							Annotations map[string]string
						}
						Spec struct {
							Containers []struct {
								Env []struct{ Name, Value string }
							}
						}
					}
				}
			}
			if err := dec.Decode(&d); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			a := d.Spec.Template.Metadata.Annotations
			if d.Kind != "Deployment" || a["dapr.io/enabled"] != "true" {
				continue
			}
			id := a["dapr.io/app-id"]
			if a["dapr.io/app-port"] != want[id] || a["dapr.io/config"] != "appconfig" {
				t.Errorf("%s: annotations %v", f, a)
			}
			if env := d.Spec.Template.Spec.Containers[0].Env; len(env) == 0 || env[0].Name != "APP_PORT" || env[0].Value != want[id] {
				t.Errorf("%s: the app does not listen on its app-port: %v", f, env)
			}
			if !strings.HasPrefix(filepath.Base(f), id) {
				t.Errorf("%s holds app %s", f, id)
			}
			seen[id] = true
		}
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("no annotated Deployment for %s", id)
		}
	}
}
