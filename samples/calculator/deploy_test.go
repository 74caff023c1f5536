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

	"github.com/tandem-run/tandem/internal/images"
)

// The Kubernetes manifests are the five apps, each a Deployment with the
// annotations the injector reads and the image make images builds (tagged
// with the chart's appVersion). The statestore Component and the appconfig
// Configuration are the chart's (redis.enabled, zipkin.enabled): one owner,
// so applying the sample overwrites nothing of the chart's, nor the other
// way round.
func TestDeployManifests(t *testing.T) {
	appVersion, err := images.ChartAppVersion("../..")
	if err != nil {
		t.Fatal(err)
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
								Image string
								Env   []struct{ Name, Value string }
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
			if d.Kind != "Deployment" && d.Kind != "Service" {
				t.Errorf("%s holds a %s: the sample holds the apps only (the chart owns Components and Configurations)", f, d.Kind)
			}
			a := d.Spec.Template.Metadata.Annotations
			if d.Kind != "Deployment" || a["dapr.io/enabled"] != "true" {
				continue
			}
			if img := d.Spec.Template.Spec.Containers[0].Image; img != "tandem/calculator-operator:"+appVersion && img != "tandem/calculator-frontend:"+appVersion {
				t.Errorf("%s: image %q is not one make images builds (tandem/calculator-*:%s)", f, img, appVersion)
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
