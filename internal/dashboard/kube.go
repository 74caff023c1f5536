package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	httpapi "github.com/tandem-run/tandem/internal/api/http"
	"github.com/tandem-run/tandem/internal/ports"
	"github.com/tandem-run/tandem/pkg/resolver/standalone"
)

// The pod annotations read (Dapr's names; the injector's table is
// internal/sidecarflag), and the sidecar's container.
const (
	annEnabled       = "dapr.io/enabled"
	annAppID         = "dapr.io/app-id"
	annMetricsPort   = "dapr.io/metrics-port"
	annEnableMetrics = "dapr.io/enable-metrics"
	sidecarContainer = "daprd"
)

// pods is the Kubernetes source: a watched cache of the pods of one
// namespace, or of all, read with get, list and watch on pods only.
type pods struct {
	factory informers.SharedInformerFactory
	synced  cache.InformerSynced
	lister  listersv1.PodLister
	scope   string // what Apps says it lists
}

func newPods(client kubernetes.Interface, namespace string) *pods {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace))
	inf := f.Core().V1().Pods()
	p := &pods{factory: f, synced: inf.Informer().HasSynced, lister: inf.Lister(), scope: "all namespaces"}
	if namespace != "" {
		p.scope = "namespace " + namespace
	}
	return p
}

// errNotSynced is the answer before the first list of the pods is in.
var errNotSynced = errors.New("the pods are not listed yet: the API server has not answered the first list of pods (see the dashboard's log)")

// target is a sidecar to read: a registry entry, or a pod's.
type target struct {
	standalone.Entry
	host string // where its ports are dialled: 127.0.0.1, or the pod's IP

	// A pod's only.
	pod         *corev1.Pod
	key         string // the pod's UID and its sidecar's restart count
	metricsPort int    // from the pod's annotations
	unread      string // why the sidecar cannot be read, when it cannot
}

// targets lists the sidecars: the registry's, or the annotated pods.
func (d *Dashboard) targets() ([]target, error) {
	if d.pods == nil {
		entries, err := standalone.List(d.cfg.RegistryDir)
		if err != nil {
			return nil, fmt.Errorf("reading the registry %s: %w", d.cfg.RegistryDir, err)
		}
		out := make([]target, len(entries))
		for i, e := range entries {
			out[i] = target{Entry: e, host: d.cfg.Host}
		}
		return out, nil
	}
	if !d.pods.synced() {
		return nil, errNotSynced
	}
	list, err := d.pods.lister.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var out []target
	for _, p := range list {
		if p.Annotations[annEnabled] == "true" {
			out = append(out, podTarget(p))
		}
	}
	return out, nil
}

// podTarget is where pod's sidecar is read: its IP and metrics port.
func podTarget(p *corev1.Pod) target {
	t := target{pod: p, host: p.Status.PodIP, metricsPort: ports.Metrics}
	t.AppID, t.Namespace = p.Annotations[annAppID], p.Namespace
	t.StartedAt = podStart(p)
	t.key = string(p.UID)
	if st := sidecarStatus(p); st != nil {
		t.key += "/" + strconv.Itoa(int(st.RestartCount))
		if st.State.Running != nil {
			t.StartedAt = st.State.Running.StartedAt.Time
		}
	}
	switch {
	case p.Annotations[annEnableMetrics] == "false":
		t.unread = annEnableMetrics + ` is "false": the sidecar serves no metrics port, and so no ` + httpapi.DashboardPath
	case p.Status.Phase != corev1.PodRunning:
		t.unread = "the pod is " + string(p.Status.Phase)
	case net.ParseIP(p.Status.PodIP) == nil:
		t.unread = "the pod has no IP address yet"
	}
	if s, ok := p.Annotations[annMetricsPort]; ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 65535 {
			t.unread = fmt.Sprintf("%s %q is not a port", annMetricsPort, s)
		}
		t.metricsPort = n
	}
	if t.unread == "" && !hasSidecar(p) {
		t.unread = "the pod has no " + sidecarContainer + " container: it was admitted without its sidecar (was the injector down?)"
	}
	return t
}

func podStart(p *corev1.Pod) time.Time {
	if p.Status.StartTime != nil {
		return p.Status.StartTime.Time
	}
	return time.Time{}
}

func hasSidecar(p *corev1.Pod) bool {
	for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for _, c := range cs {
			if c.Name == sidecarContainer {
				return true
			}
		}
	}
	return false
}

// sidecarStatus is the status of the pod's daprd container (an init
// container when it is a native sidecar); nil before the kubelet reports.
func sidecarStatus(p *corev1.Pod) *corev1.ContainerStatus {
	for _, ss := range [][]corev1.ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses} {
		for i := range ss {
			if ss[i].Name == sidecarContainer {
				return &ss[i]
			}
		}
	}
	return nil
}

// podApp reads a pod's sidecar through its read-only route on the metrics
// port: its metadata, and whether its app is ready. Health is the route's
// appReady; when the route cannot be read, the sidecar container's
// readiness (its probe is /v1.0/healthz) as the kubelet reports it.
func (d *Dashboard) podApp(ctx context.Context, t target) App {
	p := t.pod
	a := App{
		AppID: t.AppID, Namespace: p.Namespace, Pod: p.Name, StartedAt: t.StartedAt,
		Components: []Component{}, Subscriptions: []Subscription{},
		InUse: []Resource{}, Rejected: []Rejection{},
	}
	if t.unread != "" {
		a.Health, a.HealthError = podHealth(p, t.unread)
		a.Metadata, a.MetadataErr = MetadataError, t.unread
		return a
	}
	u := "http://" + net.JoinHostPort(t.host, strconv.Itoa(t.metricsPort)) + httpapi.DashboardPath
	resp, body, err := d.get(ctx, u, maxMetadataBytes)
	var why string
	switch {
	case err != nil:
		why = err.Error()
	case resp.StatusCode == http.StatusNotFound:
		why = fmt.Sprintf("the metrics port %d serves no %s (a sidecar older than the dashboard, or another server on that port)", t.metricsPort, httpapi.DashboardPath)
	case resp.StatusCode != http.StatusOK:
		why = fmt.Sprintf("GET %s answered %s", httpapi.DashboardPath, resp.Status)
	}
	var m struct {
		metadata
		AppReady  bool   `json:"appReady"`
		Namespace string `json:"namespace"`
	}
	if why == "" {
		if err := json.Unmarshal(body, &m); err != nil {
			why = "GET " + httpapi.DashboardPath + ": " + err.Error()
		} else if m.ID != t.AppID || m.Namespace != p.Namespace {
			why = fmt.Sprintf("the sidecar at %s says it is app %q in namespace %q, not %q in %q", net.JoinHostPort(t.host, strconv.Itoa(t.metricsPort)), m.ID, m.Namespace, t.AppID, p.Namespace)
		}
	}
	if why != "" {
		a.Health, a.HealthError = podHealth(p, why)
		a.Metadata, a.MetadataErr = MetadataError, why
		return a
	}
	a.Health = Healthy
	if !m.AppReady {
		a.Health, a.HealthError = Unhealthy, "the app is not ready: its app port does not answer yet"
	}
	a.Metadata = d.fill(&a, m.metadata)
	return a
}

// podHealth is a pod's sidecar's health from the pod's status alone.
func podHealth(p *corev1.Pod, why string) (string, string) {
	st := sidecarStatus(p)
	switch {
	case st != nil && st.Ready:
		return Healthy, ""
	case st != nil && st.State.Running != nil:
		return Unhealthy, "the sidecar's readiness probe fails: its app is not ready (" + why + ")"
	}
	return Unreachable, why
}
