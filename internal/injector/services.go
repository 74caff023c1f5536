package injector

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/tandem-run/tandem/internal/ports"
)

// Labels of the Services the controller keeps.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "tandem-injector"
)

// Services keeps, for each Deployment and StatefulSet whose pod template
// asks for a sidecar, the headless Service <app-id>-dapr that sidecars
// resolve each other through: ports 80 (-> 3500, http), 50001, 50002 and
// the metrics port, selecting the workload's pods, owned by the workload so
// that Kubernetes deletes it with it. A workload that stops asking for a
// sidecar, or changes its app id, loses its old Service.
type Services struct {
	client  kubernetes.Interface
	log     *slog.Logger
	resync  time.Duration
	deploys appslisters.DeploymentLister
	sets    appslisters.StatefulSetLister
	svcs    corelisters.ServiceLister
	queue   workqueue.TypedRateLimitingInterface[workloadKey]
}

type workloadKey struct{ kind, namespace, name string }

// NewServices returns the controller; Run starts it.
func NewServices(client kubernetes.Interface, log *slog.Logger) *Services {
	return &Services{client: client, log: log, resync: 10 * time.Minute}
}

// Run watches workloads and Services until ctx ends.
func (c *Services) Run(ctx context.Context) error {
	f := informers.NewSharedInformerFactory(c.client, c.resync)
	managed := informers.NewSharedInformerFactoryWithOptions(c.client, c.resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LabelManagedBy + "=" + ManagedBy }))
	dinf := f.Apps().V1().Deployments()
	sinf := f.Apps().V1().StatefulSets()
	vinf := managed.Core().V1().Services()
	c.deploys, c.sets, c.svcs = dinf.Lister(), sinf.Lister(), vinf.Lister()
	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[workloadKey](),
		workqueue.TypedRateLimitingQueueConfig[workloadKey]{Name: "tandem-services"})
	defer c.queue.ShutDown()

	enqueue := func(kind string) cache.ResourceEventHandlerFuncs {
		add := func(obj any) {
			if m, err := metaOf(obj); err == nil {
				c.queue.Add(workloadKey{kind, m.GetNamespace(), m.GetName()})
			}
		}
		return cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, o any) { add(o) }, DeleteFunc: add}
	}
	if _, err := dinf.Informer().AddEventHandler(enqueue("Deployment")); err != nil {
		return err
	}
	if _, err := sinf.Informer().AddEventHandler(enqueue("StatefulSet")); err != nil {
		return err
	}
	// A Service changed or deleted by someone else is put back.
	owner := func(obj any) {
		m, err := metaOf(obj)
		if err != nil {
			return
		}
		for _, ref := range m.GetOwnerReferences() {
			if ref.Controller != nil && *ref.Controller && (ref.Kind == "Deployment" || ref.Kind == "StatefulSet") {
				c.queue.Add(workloadKey{ref.Kind, m.GetNamespace(), ref.Name})
			}
		}
	}
	if _, err := vinf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: owner, UpdateFunc: func(_, o any) { owner(o) }, DeleteFunc: owner}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	managed.Start(ctx.Done())
	defer f.Shutdown()
	defer managed.Shutdown()
	for t, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("services controller: the %v cache did not sync", t)
		}
	}
	for t, ok := range managed.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("services controller: the %v cache did not sync", t)
		}
	}
	c.log.Info("services controller started")
	for range 2 {
		go func() {
			for c.next(ctx) {
			}
		}()
	}
	<-ctx.Done()
	return nil
}

func (c *Services) next(ctx context.Context) bool {
	k, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(k)
	if err := c.reconcile(ctx, k); err != nil {
		c.log.Warn("keeping the headless Service", "kind", k.kind, "namespace", k.namespace, "name", k.name, "err", err)
		c.queue.AddRateLimited(k)
		return true
	}
	c.queue.Forget(k)
	return true
}

// workload is what the controller needs of a Deployment or StatefulSet.
type workload struct {
	meta     metav1.ObjectMeta
	template corev1.PodTemplateSpec
	selector *metav1.LabelSelector
	apiKind  string
}

func (c *Services) get(k workloadKey) (*workload, error) {
	switch k.kind {
	case "Deployment":
		d, err := c.deploys.Deployments(k.namespace).Get(k.name)
		if err != nil {
			return nil, err
		}
		return &workload{meta: d.ObjectMeta, template: d.Spec.Template, selector: d.Spec.Selector, apiKind: "Deployment"}, nil
	default:
		s, err := c.sets.StatefulSets(k.namespace).Get(k.name)
		if err != nil {
			return nil, err
		}
		return &workload{meta: s.ObjectMeta, template: s.Spec.Template, selector: s.Spec.Selector, apiKind: "StatefulSet"}, nil
	}
}

// reconcile makes the Services owned by one workload what it asks for.
func (c *Services) reconcile(ctx context.Context, k workloadKey) error {
	w, err := c.get(k)
	if apierrors.IsNotFound(err) {
		return nil // deleted: Kubernetes' garbage collector removes what it owned
	}
	if err != nil {
		return err
	}
	var want *corev1.Service
	if on, _ := Enabled(w.template.Annotations); on && w.meta.DeletionTimestamp == nil {
		spec, err := ParseSpec(w.template.Annotations)
		if err != nil {
			c.log.Warn("no headless Service: the pod template's annotations are invalid", "kind", k.kind, "namespace", k.namespace, "name", k.name, "err", err)
		} else {
			want = desiredService(w, spec)
		}
	}
	owned, err := c.svcs.Services(k.namespace).List(labels.Everything())
	if err != nil {
		return err
	}
	for _, s := range owned {
		if ownedBy(s, w) && (want == nil || s.Name != want.Name) {
			if err := c.client.CoreV1().Services(k.namespace).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			c.log.Info("headless Service deleted", "namespace", k.namespace, "service", s.Name, "owner", k.name)
		}
	}
	if want == nil {
		return nil
	}
	api := c.client.CoreV1().Services(k.namespace)
	cur, err := api.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := api.Create(ctx, want, metav1.CreateOptions{}); err != nil {
			return err
		}
		c.log.Info("headless Service created", "namespace", k.namespace, "service", want.Name, "owner", k.kind+"/"+k.name)
		return nil
	case err != nil:
		return err
	}
	if !ownedBy(cur, w) {
		return fmt.Errorf("Service %s/%s exists and is not owned by %s %s (another workload with app id %q, or a Service of your own): rename one of them",
			k.namespace, want.Name, k.kind, k.name, want.Annotations[AnnAppID])
	}
	if equalService(cur, want) {
		return nil
	}
	cur.Labels, cur.Annotations = want.Labels, want.Annotations
	cur.Spec.Selector, cur.Spec.Ports, cur.Spec.PublishNotReadyAddresses = want.Spec.Selector, want.Spec.Ports, want.Spec.PublishNotReadyAddresses
	if _, err := api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return err
	}
	c.log.Info("headless Service updated", "namespace", k.namespace, "service", want.Name)
	return nil
}

func desiredService(w *workload, s *Spec) *corev1.Service {
	selector := w.template.Labels
	if w.selector != nil && len(w.selector.MatchLabels) > 0 && len(w.selector.MatchExpressions) == 0 {
		selector = w.selector.MatchLabels
	}
	yes := true
	servicePorts := []corev1.ServicePort{
		{Name: "http", Port: 80, TargetPort: intstr.FromInt32(ports.HTTP), Protocol: corev1.ProtocolTCP},
		{Name: "dapr-grpc", Port: ports.GRPC, TargetPort: intstr.FromInt32(ports.GRPC), Protocol: corev1.ProtocolTCP},
		{Name: "dapr-internal", Port: ports.Internal, TargetPort: intstr.FromInt32(ports.Internal), Protocol: corev1.ProtocolTCP},
	}
	if s.EnableMetrics {
		servicePorts = append(servicePorts, corev1.ServicePort{Name: "dapr-metrics", Port: int32(s.MetricsPort), TargetPort: intstr.FromInt32(int32(s.MetricsPort)), Protocol: corev1.ProtocolTCP})
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:      s.AppID + "-dapr",
			Namespace: w.meta.Namespace,
			Labels:    map[string]string{LabelManagedBy: ManagedBy, AnnEnabled: "true"},
			Annotations: map[string]string{
				AnnAppID:               s.AppID,
				"prometheus.io/scrape": strconv.FormatBool(s.EnableMetrics),
				"prometheus.io/port":   strconv.Itoa(s.MetricsPort),
				"prometheus.io/path":   "/metrics",
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: w.apiKind, Name: w.meta.Name, UID: w.meta.UID,
				Controller: &yes, BlockOwnerDeletion: &yes,
			}},
		},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  maps.Clone(selector),
			Ports:     servicePorts,
		},
	}
}

func ownedBy(s *corev1.Service, w *workload) bool {
	return slices.ContainsFunc(s.OwnerReferences, func(r metav1.OwnerReference) bool { return r.UID == w.meta.UID })
}

func equalService(a, b *corev1.Service) bool {
	if !maps.Equal(a.Spec.Selector, b.Spec.Selector) || !maps.Equal(a.Annotations, b.Annotations) || !maps.Equal(a.Labels, b.Labels) || len(a.Spec.Ports) != len(b.Spec.Ports) {
		return false
	}
	for i := range a.Spec.Ports {
		p, q := a.Spec.Ports[i], b.Spec.Ports[i]
		if p.Name != q.Name || p.Port != q.Port || p.TargetPort != q.TargetPort || p.Protocol != q.Protocol {
			return false
		}
	}
	return true
}

func metaOf(obj any) (metav1.Object, error) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return o, nil
	case *appsv1.StatefulSet:
		return o, nil
	case *corev1.Service:
		return o, nil
	}
	return nil, fmt.Errorf("unexpected object %T", obj)
}
