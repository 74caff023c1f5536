package ca

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Bundles keeps the trust bundle ConfigMap (key ca.crt) in every namespace
// where a sidecar was injected, so that sidecars mount it. Ensure is called
// for a namespace when a pod there is injected; Run re-checks every known
// namespace now and then, and puts a new bundle (a rotation) everywhere.
type Bundles struct {
	kube   kubernetes.Interface
	name   string
	log    *slog.Logger
	mu     sync.Mutex
	bundle []byte
	known  map[string]bool
	queue  chan string
}

// NewBundles returns a keeper of ConfigMap name holding bundle.
func NewBundles(kube kubernetes.Interface, name string, bundle []byte, log *slog.Logger) *Bundles {
	return &Bundles{kube: kube, name: name, bundle: bundle, log: log, known: map[string]bool{}, queue: make(chan string, 1024)}
}

// Ensure asks for the ConfigMap in namespace; it does not wait.
func (b *Bundles) Ensure(namespace string) {
	b.mu.Lock()
	seen := b.known[namespace]
	b.known[namespace] = true
	b.mu.Unlock()
	if !seen {
		select {
		case b.queue <- namespace:
		default: // the resync picks it up
		}
	}
}

// SetBundle changes the bundle; every known namespace gets it.
func (b *Bundles) SetBundle(bundle []byte) {
	b.mu.Lock()
	changed := !bytes.Equal(b.bundle, bundle)
	b.bundle = bundle
	b.mu.Unlock()
	if changed {
		b.resync()
	}
}

// Run writes the ConfigMaps asked for, and every known one every resync,
// until ctx ends. The namespaces that have the ConfigMap already (kept by
// an earlier run of the control plane) are known from the start, so that a
// changed bundle reaches them without a pod injected there first.
func (b *Bundles) Run(ctx context.Context, resync time.Duration) error {
	t := time.NewTicker(resync)
	defer t.Stop()
	found := b.discover(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ns := <-b.queue:
			b.write(ctx, ns)
		case <-t.C:
			if !found {
				found = b.discover(ctx)
			}
			b.resync()
		}
	}
}

// discover adds the namespaces that have the ConfigMap to the known ones
// and asks for each to be checked.
func (b *Bundles) discover(ctx context.Context) bool {
	list, err := b.kube.CoreV1().ConfigMaps(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: "metadata.name=" + b.name,
		LabelSelector: "app.kubernetes.io/part-of=tandem",
	})
	if err != nil {
		b.log.Error("listing the trust bundle's ConfigMaps failed; namespaces are known again as pods are injected, and listed again at the next resync", "configmap", b.name, "err", err)
		return false
	}
	for _, cm := range list.Items {
		b.Ensure(cm.Namespace)
	}
	return true
}

func (b *Bundles) resync() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ns := range b.known {
		select {
		case b.queue <- ns:
		default:
		}
	}
}

func (b *Bundles) write(ctx context.Context, ns string) {
	b.mu.Lock()
	bundle := b.bundle
	b.mu.Unlock()
	cms := b.kube.CoreV1().ConfigMaps(ns)
	cm, err := cms.Get(ctx, b.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: b.name, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/part-of": "tandem"}},
			Data:       map[string]string{"ca.crt": string(bundle)},
		}, metav1.CreateOptions{})
	case err == nil && cm.Data["ca.crt"] != string(bundle):
		cm.Data = map[string]string{"ca.crt": string(bundle)}
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	}
	if err != nil && !apierrors.IsAlreadyExists(err) {
		b.log.Error("trust bundle ConfigMap not written; retried at the next resync", "namespace", ns, "configmap", b.name, "err", err)
	}
}
