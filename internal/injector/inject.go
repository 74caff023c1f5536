package injector

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/version"

	"github.com/tandem-run/tandem/internal/ports"
)

const (
	SidecarName = "daprd" // the container's name, as Dapr's tools expect it
	// AnnInjected marks a pod the injector has patched.
	AnnInjected = "dapr.io/sidecar-injected"
	// TokenSecretKey is the key of the API and app token Secrets, as in Dapr.
	TokenSecretKey = "token"
)

// sidecarPorts are the sidecar's ports in a pod, the metrics port aside.
var sidecarPorts = []int{ports.HTTP, ports.GRPC, ports.Internal, ports.Public}

// sidecarEnv is every variable the injector sets on the sidecar, and where
// its value comes from; a nil source leaves it out of this pod.
var sidecarEnv = []struct {
	name string
	from func(*Spec) *corev1.EnvVarSource
}{
	{"NAMESPACE", func(*Spec) *corev1.EnvVarSource { return fieldRef("metadata.namespace") }},
	{"POD_NAME", func(*Spec) *corev1.EnvVarSource { return fieldRef("metadata.name") }},
	{"DAPR_API_TOKEN", func(s *Spec) *corev1.EnvVarSource { return secretRef(s.APITokenSecret) }},
	{"APP_API_TOKEN", func(s *Spec) *corev1.EnvVarSource { return secretRef(s.AppTokenSecret) }},
}

// appEnv is what the injector sets on every app container that lacks it:
// how the app finds its sidecar.
var appEnv = []corev1.EnvVar{
	{Name: "DAPR_HTTP_PORT", Value: strconv.Itoa(ports.HTTP)},
	{Name: "DAPR_GRPC_PORT", Value: strconv.Itoa(ports.GRPC)},
}

// ownedEnv names every variable the injector sets, on the sidecar or the
// app, taken from the two lists above so that it cannot drift from them;
// dapr.io/env may set none of them.
var ownedEnv = func() []string {
	var names []string
	for _, e := range sidecarEnv {
		names = append(names, e.name)
	}
	for _, e := range appEnv {
		names = append(names, e.Name)
	}
	return names
}()

// Config is the injector's own configuration: what every sidecar gets
// unless its pod's annotations say otherwise.
type Config struct {
	// SidecarImage is the sidecar image, e.g. tandem/sidecar:1.0.
	SidecarImage string
	PullPolicy   corev1.PullPolicy
	// Resources are the sidecar's default requests and limits.
	Resources corev1.ResourceRequirements
	// ClusterDomain is the cluster's DNS domain (cluster.local).
	ClusterDomain string
	// AllowedUsers are the users (service accounts, as
	// system:serviceaccount:<ns>:<name>, and controller identities) whose
	// pod creations are injected; see DefaultAllowedUsers.
	AllowedUsers []string
	// NativeSupported says the cluster runs native sidecars (init
	// containers with restartPolicy Always: Kubernetes 1.29 and later);
	// Native makes them the default where a pod's
	// dapr.io/enable-native-sidecar does not choose. Both are decided when
	// the injector starts (cmd/injector asks the API server its version),
	// so that admission stays a function of the request.
	NativeSupported bool
	Native          bool
	// BlockShutdown is how long a classic sidecar goes on serving after
	// SIGTERM, while its app finishes (dapr.io/block-shutdown-duration
	// overrides it). A native sidecar needs none: the kubelet stops it
	// after the app's containers.
	BlockShutdown time.Duration
	// MTLS, when set, gives every sidecar mutual TLS with a certificate of
	// the control plane's CA (internal/ca): the flags, a projected token
	// with the CA's audience, and the trust bundle's ConfigMap, mounted.
	MTLS *MTLS
}

// MTLS is where sidecars get their identity.
type MTLS struct {
	// SentryAddress is the CA's https://host:port.
	SentryAddress string
	TrustDomain   string
	// BundleConfigMap names the ConfigMap (key ca.crt) the injector keeps
	// in every namespace with injected pods.
	BundleConfigMap string
	// Audience of the projected token (internal/ca.Audience).
	Audience string
	// AllowPlaintextPeers lets sidecars take calls from, and make calls
	// to, sidecars without mutual TLS: the window of an upgrade from them.
	AllowPlaintextPeers bool
}

// Where a sidecar finds its token for the CA and the trust bundle.
const (
	sentryVolume  = "tandem-sentry-token"
	trustVolume   = "tandem-trust-bundle"
	sentryDir     = "/var/run/secrets/tandem.io/sentry"
	trustDir      = "/var/run/secrets/tandem.io/trust"
	tokenLifetime = 3600 // seconds; the kubelet renews it at 80%
)

// volumes are the pod volumes the sidecar's mounts need.
func (m *MTLS) volumes() []corev1.Volume {
	exp := int64(tokenLifetime)
	return []corev1.Volume{
		{Name: sentryVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: m.Audience, ExpirationSeconds: &exp, Path: "token"}}}}}},
		{Name: trustVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: m.BundleConfigMap},
			Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}}},
	}
}

// DefaultBlockShutdown is the injector's default Config.BlockShutdown: the
// app gets SIGTERM with its classic sidecar, and may still call through it
// while it finishes what it has in flight.
const DefaultBlockShutdown = 5 * time.Second

// DefaultAllowedUsers are Kubernetes' workload controllers: the service
// accounts kube-controller-manager uses for them (with
// --use-service-account-credentials, the default of most clusters), and
// its own identity otherwise.
var DefaultAllowedUsers = []string{
	"system:serviceaccount:kube-system:replicaset-controller",
	"system:serviceaccount:kube-system:deployment-controller",
	"system:serviceaccount:kube-system:statefulset-controller",
	"system:serviceaccount:kube-system:daemon-set-controller",
	"system:serviceaccount:kube-system:job-controller",
	"system:serviceaccount:kube-system:cronjob-controller",
	"system:serviceaccount:kube-system:replication-controller",
	"system:kube-controller-manager",
}

// NativeSidecarsSupported says whether a cluster of version v runs native
// sidecars: Kubernetes 1.29 and later (beta and on by default in 1.29, GA in
// 1.33).
func NativeSidecarsSupported(v *version.Info) (bool, error) {
	major, err1 := strconv.Atoi(strings.TrimRight(v.Major, "+"))
	minor, err2 := strconv.Atoi(strings.TrimRight(v.Minor, "+"))
	if err1 != nil || err2 != nil {
		return false, fmt.Errorf("the API server's version %q.%q (%s) is not a number", v.Major, v.Minor, v.GitVersion)
	}
	return major > 1 || major == 1 && minor >= 29, nil
}

// PatchOp is one JSON patch operation (RFC 6902).
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Inject returns the JSON patch that adds the sidecar to pod, and warnings
// for the user. A pod that does not ask for a sidecar, or already has one,
// gets no patch. Bad annotations are an error naming them.
func Inject(cfg Config, pod *corev1.Pod) ([]PatchOp, []string, error) {
	on, err := Enabled(pod.Annotations)
	if err != nil || !on {
		return nil, nil, err
	}
	isSidecar := func(c corev1.Container) bool { return c.Name == SidecarName }
	if slices.ContainsFunc(pod.Spec.Containers, isSidecar) || slices.ContainsFunc(pod.Spec.InitContainers, isSidecar) {
		return nil, nil, nil // injected already: re-invocation changes nothing
	}
	spec, err := ParseSpec(pod.Annotations)
	if err != nil {
		return nil, nil, err
	}
	var warnings []string
	native := cfg.Native && cfg.NativeSupported
	if spec.Native != nil {
		if *spec.Native && !cfg.NativeSupported {
			return nil, nil, fmt.Errorf("%s \"true\": this cluster does not run native sidecars (init containers with restartPolicy Always, Kubernetes 1.29 and later); remove the annotation for a classic sidecar", AnnNativeSidecar)
		}
		native = *spec.Native
	}
	if native && spec.BlockShutdown >= 0 {
		warnings = append(warnings, fmt.Sprintf("%s has no effect on a native sidecar: the kubelet stops it after the app's containers", AnnBlockShutdown))
	}
	if len(spec.Ignored) > 0 {
		warnings = append(warnings, fmt.Sprintf("annotations without effect in this injector: %s", strings.Join(spec.Ignored, ", ")))
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if slices.Contains(sidecarPorts, int(p.ContainerPort)) || (spec.EnableMetrics && int(p.ContainerPort) == spec.MetricsPort) {
				return nil, nil, fmt.Errorf("container %q uses port %d, which the sidecar needs (%v, metrics %d)", c.Name, p.ContainerPort, sidecarPorts, spec.MetricsPort)
			}
		}
	}

	sidecar := cfg.container(spec, native)
	var ops []PatchOp
	switch {
	case !native:
		ops = append(ops, PatchOp{Op: "add", Path: "/spec/containers/-", Value: sidecar})
	case len(pod.Spec.InitContainers) == 0:
		ops = append(ops, PatchOp{Op: "add", Path: "/spec/initContainers", Value: []corev1.Container{sidecar}})
	default:
		// First, so that the app's own init containers may call through it.
		ops = append(ops, PatchOp{Op: "add", Path: "/spec/initContainers/0", Value: sidecar})
	}
	if cfg.MTLS != nil {
		vols := cfg.MTLS.volumes()
		if len(pod.Spec.Volumes) == 0 {
			ops = append(ops, PatchOp{Op: "add", Path: "/spec/volumes", Value: vols})
		} else {
			for _, v := range vols {
				if slices.ContainsFunc(pod.Spec.Volumes, func(x corev1.Volume) bool { return x.Name == v.Name }) {
					return nil, nil, fmt.Errorf("the pod has a volume named %q, which the sidecar needs", v.Name)
				}
				ops = append(ops, PatchOp{Op: "add", Path: "/spec/volumes/-", Value: v})
			}
		}
	}
	for i, c := range pod.Spec.Containers {
		var add []corev1.EnvVar
		for _, e := range appEnv {
			if !slices.ContainsFunc(c.Env, func(x corev1.EnvVar) bool { return x.Name == e.Name }) {
				add = append(add, e)
			}
		}
		switch {
		case len(add) == 0:
		case len(c.Env) == 0:
			ops = append(ops, PatchOp{Op: "add", Path: fmt.Sprintf("/spec/containers/%d/env", i), Value: add})
		default:
			for _, e := range add {
				ops = append(ops, PatchOp{Op: "add", Path: fmt.Sprintf("/spec/containers/%d/env/-", i), Value: e})
			}
		}
	}
	if pod.Annotations[AnnInjected] == "" {
		ops = append(ops, PatchOp{Op: "add", Path: "/metadata/annotations/" + escapePointer(AnnInjected), Value: "true"})
	}
	return ops, warnings, nil
}

// container is the sidecar container for spec: a native sidecar (an init
// container that runs beside the app's, restartPolicy Always, started once
// its startup probe passes) or a classic one.
func (cfg Config) container(s *Spec, native bool) corev1.Container {
	image := cfg.SidecarImage
	if s.Image != "" {
		image = s.Image
	}
	containerPorts := []corev1.ContainerPort{
		{Name: "dapr-http", ContainerPort: ports.HTTP, Protocol: corev1.ProtocolTCP},
		{Name: "dapr-grpc", ContainerPort: ports.GRPC, Protocol: corev1.ProtocolTCP},
		{Name: "dapr-internal", ContainerPort: ports.Internal, Protocol: corev1.ProtocolTCP},
		{Name: "dapr-public", ContainerPort: ports.Public, Protocol: corev1.ProtocolTCP},
	}
	if s.EnableMetrics {
		containerPorts = append(containerPorts, corev1.ContainerPort{Name: "dapr-metrics", ContainerPort: int32(s.MetricsPort), Protocol: corev1.ProtocolTCP})
	}
	var mounts []corev1.VolumeMount
	if cfg.MTLS != nil {
		mounts = []corev1.VolumeMount{{Name: sentryVolume, MountPath: sentryDir, ReadOnly: true}, {Name: trustVolume, MountPath: trustDir, ReadOnly: true}}
	}

	var env []corev1.EnvVar
	for _, e := range sidecarEnv {
		if from := e.from(s); from != nil {
			env = append(env, corev1.EnvVar{Name: e.name, ValueFrom: from})
		}
	}
	// ParseSpec refused any of the injector's own: these come after them.
	for _, kv := range s.Env {
		env = append(env, corev1.EnvVar{Name: kv[0], Value: kv[1]})
	}

	res := *cfg.Resources.DeepCopy()
	setQty := func(l *corev1.ResourceList, name corev1.ResourceName, q *resource.Quantity) {
		if q == nil {
			return
		}
		if *l == nil {
			*l = corev1.ResourceList{}
		}
		(*l)[name] = *q
	}
	setQty(&res.Requests, corev1.ResourceCPU, s.CPURequest)
	setQty(&res.Limits, corev1.ResourceCPU, s.CPULimit)
	setQty(&res.Requests, corev1.ResourceMemory, s.MemoryRequest)
	setQty(&res.Limits, corev1.ResourceMemory, s.MemoryLimit)
	// A default request above an annotated limit would make the pod invalid.
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if l, ok := res.Limits[name]; ok {
			if r, ok := res.Requests[name]; ok && r.Cmp(l) > 0 {
				res.Requests[name] = l
			}
		}
	}

	no, yes := false, true
	nonRoot := int64(65532)
	probe := func(path string, delay, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(ports.Public)}},
			InitialDelaySeconds: delay, PeriodSeconds: period, TimeoutSeconds: 3, FailureThreshold: failures,
		}
	}
	c := corev1.Container{
		Name:            SidecarName,
		Image:           image,
		ImagePullPolicy: cfg.PullPolicy,
		Args:            cfg.args(s, native),
		Ports:           containerPorts,
		Env:             env,
		Resources:       res,
		VolumeMounts:    mounts,
		// Ready once the app answers; alive while the sidecar itself serves.
		ReadinessProbe:           probe("/v1.0/healthz", 1, 5, 3),
		LivenessProbe:            probe("/v1.0/healthz/outbound", 3, 10, 3),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             &yes,
			RunAsUser:                &nonRoot,
			RunAsGroup:               &nonRoot,
			AllowPrivilegeEscalation: &no,
			ReadOnlyRootFilesystem:   &yes,
			Privileged:               &no,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	if native {
		// The app's containers start once the sidecar itself serves: the
		// outbound health route, not /v1.0/healthz, which waits for the
		// app and would never pass before the app starts.
		always := corev1.ContainerRestartPolicyAlways
		c.RestartPolicy = &always
		c.StartupProbe = probe("/v1.0/healthz/outbound", 0, 1, 120)
	}
	return c
}

// args are the sidecar's arguments: the injector's own, and those of the
// options the pod's annotations set (sidecarflag.Annotated).
func (cfg Config) args(s *Spec, native bool) []string {
	flags := maps.Clone(s.flags)
	set := func(flag string, args ...string) { flags[flag] = append([]string{"--" + flag}, args...) }
	set("mode", "kubernetes")
	set("app-id", s.AppID)
	set("dapr-http-port", strconv.Itoa(ports.HTTP))
	set("dapr-grpc-port", strconv.Itoa(ports.GRPC))
	set("dapr-internal-grpc-port", strconv.Itoa(ports.Internal))
	set("dapr-public-port", strconv.Itoa(ports.Public))
	set("dapr-listen-addresses", "[::1],127.0.0.1")
	if cfg.ClusterDomain != "" && cfg.ClusterDomain != "cluster.local" {
		set("kubernetes-cluster-domain", cfg.ClusterDomain)
	}
	// The metrics port, the annotation's or the default, is written
	// whenever metrics are on: the pod declares it.
	delete(flags, "metrics-port")
	if s.EnableMetrics {
		set("metrics-port", strconv.Itoa(s.MetricsPort))
	}
	if m := cfg.MTLS; m != nil {
		set("enable-mtls")
		set("sentry-address", m.SentryAddress)
		set("sentry-token-file", sentryDir+"/token")
		set("trust-anchors-file", trustDir+"/ca.crt")
		set("trust-domain", m.TrustDomain)
		if m.AllowPlaintextPeers {
			set("allow-plaintext-peers")
		}
	}
	// A native sidecar needs no wait: the kubelet stops it after the app.
	delete(flags, "dapr-block-shutdown-duration")
	if block := cfg.BlockShutdown; !native {
		if s.BlockShutdown >= 0 {
			block = s.BlockShutdown
		}
		if block > 0 {
			set("dapr-block-shutdown-duration", block.String())
		}
	}

	var args []string
	for _, f := range argOrder {
		args = append(args, flags[f]...)
		delete(flags, f)
	}
	for _, f := range slices.Sorted(maps.Keys(flags)) {
		args = append(args, flags[f]...)
	}
	return args
}

// argOrder is the order of the flags the injector writes, which the golden
// files pin; a flag it does not name comes after them, by name.
var argOrder = []string{
	"mode", "app-id", "app-protocol",
	"dapr-http-port", "dapr-grpc-port", "dapr-internal-grpc-port", "dapr-public-port", "dapr-listen-addresses",
	"log-level", "app-port", "config", "log-as-json", "kubernetes-cluster-domain", "enable-metrics", "metrics-port",
	"max-body-size", "read-buffer-size", "app-max-concurrency", "dapr-graceful-shutdown-seconds",
	"enable-mtls", "sentry-address", "sentry-token-file", "trust-anchors-file", "trust-domain", "allow-plaintext-peers",
	"dapr-block-shutdown-duration",
}

func fieldRef(path string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}
}

// secretRef is the token key of a Secret; nil without a Secret.
func secretRef(secret string) *corev1.EnvVarSource {
	if secret == "" {
		return nil
	}
	return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: TokenSecretKey,
	}}
}

// escapePointer escapes a JSON pointer segment (RFC 6901).
func escapePointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}
