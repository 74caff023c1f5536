package node

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/node"
	"github.com/tandem-run/tandem/internal/testutil/toolbin"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

// helm runs the cached helm against the node and returns its output.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	h := exec.Command(toolbin.Path(t, "helm"), append([]string{"--kubeconfig", cluster.Kubeconfig}, args...)...)
	h.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(os.TempDir(), "tandem-node-helm"), "HELM_CONFIG_HOME="+filepath.Join(os.TempDir(), "tandem-node-helm"))
	h.Stdout, h.Stderr = &out, &out
	err := h.Run()
	return out.String(), err
}

// apply creates or replaces the objects of YAML files in ns, as kubectl
// apply -f would, resolving kinds through discovery.
func apply(t *testing.T, ns string, files ...string) {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	dc, err := discovery.NewDiscoveryClientForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn := dynamic.NewForConfigOrDie(cluster.Config)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for doc := range bytes.SplitSeq(b, []byte("\n---\n")) {
			var m map[string]any
			if err := yaml.Unmarshal(doc, &m); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(m) == 0 {
				continue
			}
			o := &unstructured.Unstructured{Object: m}
			gvk := o.GroupVersionKind()
			mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Fatalf("%s: %s: %v", f, gvk, err)
			}
			var r dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
			if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
				r = dyn.Resource(mapping.Resource).Namespace(ns)
			}
			if _, err := r.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "tandem-node-test", Force: true}); err != nil {
				t.Fatalf("%s: %s %s: %v", f, o.GetKind(), o.GetName(), err)
			}
		}
	}
}

// waitAvailable waits until each Deployment has all its replicas updated,
// ready and available, and no old ones.
func waitAvailable(t *testing.T, ns string, d time.Duration, names ...string) {
	t.Helper()
	ctx := ctxT(t, d)
	for _, name := range names {
		for {
			dep, err := cluster.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			if err == nil && deploymentDone(dep) {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("deployment %s/%s not available after %s: %+v\npods: %s", ns, name, d, statusOf(dep), podsOf(ns, dep))
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
}

// waitResolvable waits until the cluster DNS answers each app id's
// <id>-dapr name in ns with the address of every ready pod of the
// Deployment of the same name: a Deployment is available when its pods are
// Ready, and the EndpointSlice behind the name, then CoreDNS, follow a
// moment later; a call made in between finds no sidecars.
func waitResolvable(t *testing.T, ns string, d time.Duration, ids ...string) {
	t.Helper()
	ctx := ctxT(t, d)
	dns := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var dialer net.Dialer
		return dialer.DialContext(ctx, network, net.JoinHostPort(node.BridgeIP, "53"))
	}}
	for _, id := range ids {
		name := id + "-dapr." + ns + ".svc.cluster.local."
		var want, got []string
		var lerr error
		for {
			want = want[:0]
			if dep, err := cluster.Client.AppsV1().Deployments(ns).Get(ctx, id, metav1.GetOptions{}); err == nil {
				for _, p := range deploymentPods(ns, dep) {
					if podReady(&p) && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
						want = append(want, p.Status.PodIP)
					}
				}
			}
			got = got[:0]
			lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			ips, err := dns.LookupHost(lctx, name)
			cancel()
			got, lerr = append(got, ips...), err
			slices.Sort(want)
			slices.Sort(got)
			if len(want) > 0 && slices.Equal(want, got) {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: DNS answers %v (%v) after %s, want the ready pods' %v", name, got, lerr, d, want)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

func deploymentDone(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.ReadyReplicas == want &&
		s.AvailableReplicas == want && s.Replicas == want
}

func statusOf(d *appsv1.Deployment) any {
	if d == nil {
		return nil
	}
	return d.Status
}

// podsOf describes the pods of a Deployment, for a failure message.
func podsOf(ns string, d *appsv1.Deployment) string {
	if d == nil || d.Spec.Selector == nil {
		return ""
	}
	pods := deploymentPods(ns, d)
	var b strings.Builder
	for i := range pods {
		b.WriteString("\n  " + pods[i].Name + ": " + describe(&pods[i]))
	}
	return b.String()
}

func deploymentPods(ns string, d *appsv1.Deployment) []corev1.Pod {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil
	}
	return podsWith(ns, sel)
}

func podsWith(ns string, sel labels.Selector) []corev1.Pod {
	list, err := cluster.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil
	}
	return list.Items
}
