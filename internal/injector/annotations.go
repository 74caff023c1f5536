// Package injector adds the sidecar to pods: Inject is a pure function from
// a pod and the injector's Config to a JSON patch, Review wraps it in the
// AdmissionReview exchange, and Handler serves Review over HTTP (cmd/injector
// listens with TLS, its certificate from FileCert or SelfSigned). The
// Services controller keeps the headless <app-id>-dapr Service of each
// annotated workload, through which sidecars find each other by DNS.
package injector

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tandem-run/tandem/internal/ports"
	"github.com/tandem-run/tandem/pkg/resolver"
)

// The pod annotations the injector reads, as Dapr names them.
const (
	AnnEnabled          = "dapr.io/enabled"
	AnnAppID            = "dapr.io/app-id"
	AnnAppPort          = "dapr.io/app-port"
	AnnAppProtocol      = "dapr.io/app-protocol"
	AnnConfig           = "dapr.io/config"
	AnnLogLevel         = "dapr.io/log-level"
	AnnLogAsJSON        = "dapr.io/log-as-json"
	AnnSidecarImage     = "dapr.io/sidecar-image"
	AnnCPURequest       = "dapr.io/sidecar-cpu-request"
	AnnCPULimit         = "dapr.io/sidecar-cpu-limit"
	AnnMemoryRequest    = "dapr.io/sidecar-memory-request"
	AnnMemoryLimit      = "dapr.io/sidecar-memory-limit"
	AnnAPITokenSecret   = "dapr.io/api-token-secret"
	AnnAppTokenSecret   = "dapr.io/app-token-secret"
	AnnEnv              = "dapr.io/env"
	AnnEnableMetrics    = "dapr.io/enable-metrics"
	AnnMetricsPort      = "dapr.io/metrics-port"
	AnnMaxBodySize      = "dapr.io/max-body-size"
	AnnGracefulShutdown = "dapr.io/graceful-shutdown-seconds"
	AnnMaxConcurrency   = "dapr.io/app-max-concurrency"
	AnnReadBufferSize   = "dapr.io/http-read-buffer-size" // in KB, as in Dapr
	AnnMaxRequestSize   = "dapr.io/http-max-request-size" // in MB, as in Dapr
	// AnnNativeSidecar chooses a native sidecar (an init container with
	// restartPolicy Always) or a classic one (a container beside the
	// app's); absent, the injector's default.
	AnnNativeSidecar = "dapr.io/enable-native-sidecar"
	// AnnBlockShutdown is how long a classic sidecar goes on serving after
	// SIGTERM (--dapr-block-shutdown-duration), e.g. "5s", as in Dapr.
	AnnBlockShutdown = "dapr.io/block-shutdown-duration"
)

// known lists every annotation read; other dapr.io/* annotations are
// reported as having no effect.
var known = []string{
	AnnEnabled, AnnAppID, AnnAppPort, AnnAppProtocol, AnnConfig, AnnLogLevel, AnnLogAsJSON,
	AnnSidecarImage, AnnCPURequest, AnnCPULimit, AnnMemoryRequest, AnnMemoryLimit,
	AnnAPITokenSecret, AnnAppTokenSecret, AnnEnv, AnnEnableMetrics, AnnMetricsPort,
	AnnMaxBodySize, AnnGracefulShutdown, AnnMaxConcurrency, AnnReadBufferSize, AnnMaxRequestSize,
	AnnNativeSidecar, AnnBlockShutdown,
}

// The bounds of numeric annotations: those of the sidecar flags they become
// (cmd/sidecar/options.go), so an admitted pod's sidecar always starts.
// Resource quantities are bounded too: a value an int64 cannot hold would
// wrap on its way to the kubelet.
const (
	maxBodySize       = 1 << 40 // --max-body-size: 1 byte to 1Ti
	minReadBufferSize = 1 << 10 // --read-buffer-size: 1Ki to 8Mi
	maxReadBufferSize = 8 << 20
	maxConcurrency    = 1 << 20   // --app-max-concurrency
	maxGraceSeconds   = 3600      // --dapr-graceful-shutdown-seconds
	maxBlockShutdown  = time.Hour // --dapr-block-shutdown-duration
)

var (
	maxCPU    = resource.MustParse("1024")
	maxMemory = resource.MustParse("64Ti")
)

// Spec is what a pod's annotations ask of its sidecar, checked.
type Spec struct {
	AppID            string
	AppPort          int // 0: none
	AppProtocol      string
	Config           string
	LogLevel         string
	LogAsJSON        bool
	Image            string // "": the injector's default
	CPURequest       *resource.Quantity
	CPULimit         *resource.Quantity
	MemoryRequest    *resource.Quantity
	MemoryLimit      *resource.Quantity
	APITokenSecret   string
	AppTokenSecret   string
	Env              [][2]string // never a variable the injector sets (ownedEnv)
	EnableMetrics    bool
	MetricsPort      int
	MaxBodySize      int64 // bytes; 0: the sidecar's default
	ReadBufferSize   int   // bytes; 0: the sidecar's default
	GracefulShutdown int   // -1: the sidecar's default
	MaxConcurrency   int   // 0: no bound
	// Native is dapr.io/enable-native-sidecar; nil: the injector's default.
	Native *bool
	// BlockShutdown is dapr.io/block-shutdown-duration; -1: the injector's
	// default for a classic sidecar.
	BlockShutdown time.Duration
	// Ignored are dapr.io/* annotations present that have no effect here.
	Ignored []string
}

// Enabled reports whether annotations ask for a sidecar. A value that is
// neither true nor false is an error.
func Enabled(annotations map[string]string) (bool, error) {
	v, ok := annotations[AnnEnabled]
	if !ok {
		return false, nil
	}
	b, err := parseBool(AnnEnabled, v)
	return b, err
}

// ParseSpec reads and checks the annotations of a pod that asks for a
// sidecar. Every error names the annotation, the value, and what is
// accepted.
func ParseSpec(a map[string]string) (*Spec, error) {
	s := &Spec{AppProtocol: "http", LogLevel: "info", EnableMetrics: true, MetricsPort: ports.Metrics, GracefulShutdown: -1, BlockShutdown: -1}
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	s.AppID = a[AnnAppID]
	if s.AppID == "" {
		fail("%s is missing: every pod with %s: \"true\" needs an app id, a DNS-1123 label such as \"addapp\"", AnnAppID, AnnEnabled)
	} else if err := resolver.ValidateID(s.AppID); err != nil {
		fail("%s %q: %v", AnnAppID, s.AppID, err)
	}
	if v, ok := a[AnnAppPort]; ok {
		if p, err := parsePort(AnnAppPort, v); err != nil {
			fail("%v", err)
		} else {
			s.AppPort = p
		}
	}
	if v, ok := a[AnnAppProtocol]; ok {
		switch v {
		case "http", "grpc", "h2c", "https":
			s.AppProtocol = v
		default:
			fail("%s %q is not valid; accepted: http, grpc, h2c, https", AnnAppProtocol, v)
		}
	}
	if v, ok := a[AnnConfig]; ok {
		if msgs := validation.IsDNS1123Subdomain(v); len(msgs) > 0 {
			fail("%s %q is not the name of a Configuration: %s", AnnConfig, v, strings.Join(msgs, "; "))
		}
		s.Config = v
	}
	if v, ok := a[AnnLogLevel]; ok {
		if !slices.Contains([]string{"debug", "info", "warn", "error"}, v) {
			fail("%s %q is not valid; accepted: debug, info, warn, error", AnnLogLevel, v)
		}
		s.LogLevel = v
	}
	if v, ok := a[AnnLogAsJSON]; ok {
		b, err := parseBool(AnnLogAsJSON, v)
		if err != nil {
			fail("%v", err)
		}
		s.LogAsJSON = b
	}
	if v, ok := a[AnnSidecarImage]; ok {
		if v == "" || strings.ContainsAny(v, " \t\n") {
			fail("%s %q is not an image reference, such as tandem/sidecar:1.0", AnnSidecarImage, v)
		}
		s.Image = v
	}
	for _, q := range []struct {
		ann  string
		name corev1.ResourceName
		dst  **resource.Quantity
	}{
		{AnnCPURequest, corev1.ResourceCPU, &s.CPURequest}, {AnnCPULimit, corev1.ResourceCPU, &s.CPULimit},
		{AnnMemoryRequest, corev1.ResourceMemory, &s.MemoryRequest}, {AnnMemoryLimit, corev1.ResourceMemory, &s.MemoryLimit},
	} {
		v, ok := a[q.ann]
		if !ok {
			continue
		}
		qty, err := ParseResource(q.ann, q.name, v)
		if err != nil {
			fail("%v", err)
			continue
		}
		*q.dst = &qty
	}
	if s.CPURequest != nil && s.CPULimit != nil && s.CPURequest.Cmp(*s.CPULimit) > 0 {
		fail("%s %s is more than %s %s", AnnCPURequest, s.CPURequest, AnnCPULimit, s.CPULimit)
	}
	if s.MemoryRequest != nil && s.MemoryLimit != nil && s.MemoryRequest.Cmp(*s.MemoryLimit) > 0 {
		fail("%s %s is more than %s %s", AnnMemoryRequest, s.MemoryRequest, AnnMemoryLimit, s.MemoryLimit)
	}
	for _, sec := range []struct {
		ann string
		dst *string
	}{{AnnAPITokenSecret, &s.APITokenSecret}, {AnnAppTokenSecret, &s.AppTokenSecret}} {
		if v, ok := a[sec.ann]; ok {
			if msgs := validation.IsDNS1123Subdomain(v); len(msgs) > 0 {
				fail("%s %q is not the name of a Secret: %s", sec.ann, v, strings.Join(msgs, "; "))
			}
			*sec.dst = v
		}
	}
	if v, ok := a[AnnEnv]; ok {
		env, err := parseEnv(v)
		if err != nil {
			fail("%v", err)
		}
		s.Env = env
	}
	if v, ok := a[AnnEnableMetrics]; ok {
		b, err := parseBool(AnnEnableMetrics, v)
		if err != nil {
			fail("%v", err)
		}
		s.EnableMetrics = b
	}
	if v, ok := a[AnnMetricsPort]; ok {
		if p, err := parsePort(AnnMetricsPort, v); err != nil {
			fail("%v", err)
		} else {
			s.MetricsPort = p
		}
	}
	if v, ok := a[AnnMaxBodySize]; ok {
		qty, err := resource.ParseQuantity(v)
		if err != nil || qty.Sign() <= 0 || qty.Cmp(*resource.NewQuantity(maxBodySize, resource.BinarySI)) > 0 {
			fail("%s %q is not valid; accepted: a size from 1 byte to 1Ti, such as 4Mi or 16Mi", AnnMaxBodySize, v)
		} else {
			s.MaxBodySize = qty.Value()
		}
	}
	if v, ok := a[AnnMaxRequestSize]; ok {
		_, both := a[AnnMaxBodySize]
		switch n, err := parseInt(AnnMaxRequestSize, v, 1, maxBodySize>>20, "-1 for the sidecar's default (4 MB), or 1 to 1048576 MB"); {
		case err != nil:
			fail("%v", err)
		case n > 0 && both:
			fail("%s and %s set the same limit; give one", AnnMaxBodySize, AnnMaxRequestSize)
		case n > 0:
			s.MaxBodySize = int64(n) << 20
		}
	}
	if v, ok := a[AnnReadBufferSize]; ok {
		if n, err := parseInt(AnnReadBufferSize, v, minReadBufferSize>>10, maxReadBufferSize>>10, "-1 for the sidecar's default (64 KB), or 1 to 8192 KB"); err != nil {
			fail("%v", err)
		} else if n > 0 {
			s.ReadBufferSize = n << 10
		}
	}
	if v, ok := a[AnnGracefulShutdown]; ok {
		if n, err := parseInt(AnnGracefulShutdown, v, 0, maxGraceSeconds, "-1 for the sidecar's default (5), or 0 to 3600 seconds"); err != nil {
			fail("%v", err)
		} else {
			s.GracefulShutdown = n
		}
	}
	if v, ok := a[AnnMaxConcurrency]; ok {
		if n, err := parseInt(AnnMaxConcurrency, v, 0, maxConcurrency, "-1 or 0 for no bound, or 1 to 1048576 calls in flight to the app"); err != nil {
			fail("%v", err)
		} else {
			s.MaxConcurrency = max(n, 0)
		}
	}
	if v, ok := a[AnnNativeSidecar]; ok {
		b, err := parseBool(AnnNativeSidecar, v)
		if err != nil {
			fail("%v", err)
		}
		s.Native = &b
	}
	if v, ok := a[AnnBlockShutdown]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > maxBlockShutdown {
			fail("%s %q is not valid; accepted: a duration from 0s to 1h, such as 5s", AnnBlockShutdown, v)
		} else {
			s.BlockShutdown = d
		}
	}
	if s.AppPort != 0 && (s.AppPort == s.MetricsPort && s.EnableMetrics || slices.Contains(sidecarPorts, s.AppPort)) {
		fail("%s %d is a port of the sidecar (%v and the metrics port %d); give the app another", AnnAppPort, s.AppPort, sidecarPorts, s.MetricsPort)
	}
	for k := range a {
		if strings.HasPrefix(k, "dapr.io/") && !slices.Contains(known, k) && k != AnnInjected {
			s.Ignored = append(s.Ignored, k)
		}
	}
	sort.Strings(s.Ignored)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return s, nil
}

func parseBool(ann, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "1", "yes", "on", "y":
		return true, nil
	case "false", "0", "no", "off", "n":
		return false, nil
	}
	return false, fmt.Errorf("%s %q is not valid; accepted: \"true\", \"false\"", ann, v)
}

// parseInt parses a whole number from lo to hi, or -1 (unset: the default,
// or no bound, as in Dapr). It never wraps: strconv refuses what an int
// cannot hold.
func parseInt(ann, v string, lo, hi int, accepted string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || (n < lo || n > hi) && n != -1 {
		return 0, fmt.Errorf("%s %q is not valid; accepted: %s", ann, v, accepted)
	}
	return n, nil
}

// ParseResource parses the quantity of a sidecar's CPU or memory request or
// limit, given by what (an annotation or a flag): positive, and at most 1024
// CPUs or 64Ti of memory, so that it fits the int64 the kubelet uses.
func ParseResource(what string, name corev1.ResourceName, v string) (resource.Quantity, error) {
	hi, accepted := maxCPU, "a positive quantity of CPUs up to 1024, such as 100m or 0.5"
	if name == corev1.ResourceMemory {
		hi, accepted = maxMemory, "a positive quantity of memory up to 64Ti, such as 64Mi or 1Gi"
	}
	qty, err := resource.ParseQuantity(v)
	if err != nil || qty.Sign() <= 0 || qty.Cmp(hi) > 0 {
		return resource.Quantity{}, fmt.Errorf("%s %q is not valid; accepted: %s", what, v, accepted)
	}
	return qty, nil
}

func parsePort(ann, v string) (int, error) {
	p, err := strconv.Atoi(v)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("%s %q is not a port; accepted: 1 to 65535", ann, v)
	}
	return p, nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseEnv reads "KEY=value,KEY2=value2" (Dapr's format). A variable the
// injector sets itself (ownedEnv) is refused: appended after the
// injector's own, it would win, replacing a token from a Secret or the
// namespace the sidecar claims.
func parseEnv(v string) ([][2]string, error) {
	var out [][2]string
	var owned, twice []string
	for kv := range strings.SplitSeq(v, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, val, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || !envName.MatchString(k) {
			return nil, fmt.Errorf("%s %q: %q is not NAME=value with NAME a letter or _ followed by letters, digits or _", AnnEnv, v, kv)
		}
		switch {
		case slices.Contains(ownedEnv, k):
			owned = append(owned, k)
		case slices.ContainsFunc(out, func(e [2]string) bool { return e[0] == k }):
			twice = append(twice, k)
		}
		out = append(out, [2]string{k, strings.TrimSpace(val)})
	}
	var errs []string
	if len(owned) > 0 {
		errs = append(errs, fmt.Sprintf("%s sets %s, which the injector sets itself (it owns %s); remove them: the tokens come from %s and %s, the namespace and ports from the pod", AnnEnv, strings.Join(owned, ", "), strings.Join(ownedEnv, ", "), AnnAPITokenSecret, AnnAppTokenSecret))
	}
	if len(twice) > 0 {
		errs = append(errs, fmt.Sprintf("%s sets %s twice; give each variable once", AnnEnv, strings.Join(twice, ", ")))
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	return out, nil
}
