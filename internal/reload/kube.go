package reload

import (
	"context"
	"fmt"
	"sync"

	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/internal/kube"
)

// loadKube lists the namespace's Components and Resiliency resources and
// reads the Configuration --config names. Without the resiliencies.dapr.io
// CRD, or the RBAC to read it (a chart older than the sidecar), Resiliency
// resources are read from files only, as the log says.
func (r *Reloader) loadKube(ctx context.Context) error {
	kc := r.src.Kube
	objs, rv, err := kc.List(ctx, kube.Components, "")
	if err != nil {
		return err
	}
	if err := r.loadResources(ctx, originKubeComponents, r.kubeDocs(objs)); err != nil {
		return err
	}
	r.listed[originKubeComponents] = rv
	objs, rv, err = kc.List(ctx, kube.Resiliencies, "")
	switch {
	case kube.IsNotFound(err) || kube.IsForbidden(err):
		r.log.Warn("Resiliency resources are not read from the API server; install the chart's resiliencies.dapr.io CRD and sidecar RBAC, and restart", "err", err)
	case err != nil:
		return err
	default:
		if err := r.loadResources(ctx, originKubeResiliencies, r.kubeDocs(objs)); err != nil {
			return err
		}
		r.listed[originKubeResiliencies] = rv
	}
	if name := r.src.ConfigName; name != "" {
		objs, rv, err := kc.List(ctx, kube.Configurations, name)
		if err != nil {
			return err
		}
		if len(objs) == 0 {
			return fmt.Errorf("Configuration %q (dapr.io/config) not found in namespace %q: create it, or remove the annotation", name, kc.Namespace())
		}
		d := r.kubeDocs(objs)[objs[0].Key(kc.Namespace())]
		if r.conf, err = parseConfig(d); err != nil {
			return err
		}
		r.listed[originKubeConfiguration] = rv
	}
	return nil
}

// kubeDocs are objects as sources, by key.
func (r *Reloader) kubeDocs(objs []kube.Object) map[string]doc {
	out := make(map[string]doc, len(objs))
	for _, o := range objs {
		key := o.Key(r.src.Kube.Namespace())
		out[key] = doc{key: key, kind: o.Kind, name: o.Name, version: o.ResourceVersion, body: o.YAML}
	}
	return out
}

// watchKube watches the API server's objects, sending their changes on out.
func (r *Reloader) watchKube(ctx context.Context, wg *sync.WaitGroup, out chan<- update) {}

// secretCache holds the Secrets Components read.
type secretCache struct {
	client *kube.Client
}

func newSecretCache(c *kube.Client) *secretCache { return &secretCache{client: c} }

func (s *secretCache) get(ctx context.Context, ref components.SecretKeyRef) (string, error) {
	return "", fmt.Errorf("secretKeyRef: Secret %q: not read yet", ref.Name)
}

func (s *secretCache) refresh(ctx context.Context, names []string) bool { return false }

func (s *secretCache) inUse() []Resource { return nil }
