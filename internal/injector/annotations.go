// Package injector adds the sidecar to pods: Inject is a pure function from
// a pod and the injector's Config to a JSON patch, Review wraps it in the
// AdmissionReview exchange, and Server serves it over HTTPS. The Services
// controller keeps the headless <app-id>-dapr Service of each annotated
// workload, through which sidecars find each other by DNS.
package injector

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

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
)

// known lists every annotation read; other dapr.io/* annotations are
// reported as having no effect.
var known = []string{
	AnnEnabled, AnnAppID, AnnAppPort, AnnAppProtocol, AnnConfig, AnnLogLevel, AnnLogAsJSON,
	AnnSidecarImage, AnnCPURequest, AnnCPULimit, AnnMemoryRequest, AnnMemoryLimit,
	AnnAPITokenSecret, AnnAppTokenSecret, AnnEnv, AnnEnableMetrics, AnnMetricsPort,
	AnnMaxBodySize, AnnGracefulShutdown, AnnMaxConcurrency,
}

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
	MaxBodySize      int64 // 0: the sidecar's default
	GracefulShutdown int   // -1: the sidecar's default
	MaxConcurrency   int   // 0: no bound
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
	s := &Spec{AppProtocol: "http", LogLevel: "info", EnableMetrics: true, MetricsPort: 9090, GracefulShutdown: -1}
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
		ann string
		dst **resource.Quantity
	}{{AnnCPURequest, &s.CPURequest}, {AnnCPULimit, &s.CPULimit}, {AnnMemoryRequest, &s.MemoryRequest}, {AnnMemoryLimit, &s.MemoryLimit}} {
		v, ok := a[q.ann]
		if !ok {
			continue
		}
		qty, err := resource.ParseQuantity(v)
		if err != nil || qty.Sign() <= 0 {
			fail("%s %q is not a positive quantity; use Kubernetes quantities such as 100m or 0.5 (CPU), 64Mi or 1Gi (memory)", q.ann, v)
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
		if err != nil || qty.Sign() <= 0 || qty.Value() > 1<<40 {
			fail("%s %q is not a size; use a quantity such as 4Mi or 16Mi", AnnMaxBodySize, v)
		} else {
			s.MaxBodySize = qty.Value()
		}
	}
	if v, ok := a[AnnGracefulShutdown]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 3600 {
			fail("%s %q is not valid; give whole seconds from 0 to 3600", AnnGracefulShutdown, v)
		} else {
			s.GracefulShutdown = n
		}
	}
	if v, ok := a[AnnMaxConcurrency]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			fail("%s %q is not valid; give the most calls in flight to the app, a whole number from 1", AnnMaxConcurrency, v)
		} else {
			s.MaxConcurrency = n
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
