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
	"github.com/tandem-run/tandem/internal/sidecarflag"
	"github.com/tandem-run/tandem/pkg/resolver"
)

// The pod annotations the injector reads itself, as Dapr names them. Those
// that set a sidecar flag are the rows of sidecarflag.Annotated, which the
// injector checks and writes as flags; it reads a few of them too
// (AnnAppPort to AnnBlockShutdown).
const (
	AnnEnabled        = "dapr.io/enabled"
	AnnAppID          = "dapr.io/app-id"
	AnnSidecarImage   = "dapr.io/sidecar-image"
	AnnCPURequest     = "dapr.io/sidecar-cpu-request"
	AnnCPULimit       = "dapr.io/sidecar-cpu-limit"
	AnnMemoryRequest  = "dapr.io/sidecar-memory-request"
	AnnMemoryLimit    = "dapr.io/sidecar-memory-limit"
	AnnAPITokenSecret = "dapr.io/api-token-secret"
	AnnAppTokenSecret = "dapr.io/app-token-secret"
	AnnEnv            = "dapr.io/env"
	// AnnNativeSidecar chooses a native sidecar (an init container with
	// restartPolicy Always) or a classic one (a container beside the
	// app's); absent, the injector's default.
	AnnNativeSidecar = "dapr.io/enable-native-sidecar"

	AnnAppPort       = "dapr.io/app-port"
	AnnEnableMetrics = "dapr.io/enable-metrics"
	AnnMetricsPort   = "dapr.io/metrics-port"
	// AnnBlockShutdown is how long a classic sidecar goes on serving after
	// SIGTERM (--dapr-block-shutdown-duration), e.g. "5s", as in Dapr.
	AnnBlockShutdown = "dapr.io/block-shutdown-duration"
)

// ownAnnotations are those the injector acts on itself, not sidecar flags.
var ownAnnotations = []string{AnnEnabled, AnnAppID, AnnSidecarImage, AnnCPURequest, AnnCPULimit, AnnMemoryRequest, AnnMemoryLimit,
	AnnAPITokenSecret, AnnAppTokenSecret, AnnEnv, AnnNativeSidecar, AnnInjected}

// known reports whether the injector reads the annotation k; other
// dapr.io/* annotations are reported as having no effect.
func known(k string) bool {
	return slices.Contains(ownAnnotations, k) || slices.ContainsFunc(sidecarflag.Annotated, func(o sidecarflag.Option) bool { return o.Annotation == k })
}

// Resource quantities are bounded: a value an int64 cannot hold would wrap
// on its way to the kubelet.
var (
	maxCPU    = resource.MustParse("1024")
	maxMemory = resource.MustParse("64Ti")
)

// Spec is what a pod's annotations ask of its sidecar, checked.
type Spec struct {
	AppID          string
	Image          string // "": the injector's default
	CPURequest     *resource.Quantity
	CPULimit       *resource.Quantity
	MemoryRequest  *resource.Quantity
	MemoryLimit    *resource.Quantity
	APITokenSecret string
	AppTokenSecret string
	Env            [][2]string // never a variable the injector sets (ownedEnv)
	// Native is dapr.io/enable-native-sidecar; nil: the injector's default.
	Native *bool

	// The options of sidecarflag.Annotated the injector reads itself.
	AppPort       int // 0: none
	EnableMetrics bool
	MetricsPort   int
	// BlockShutdown is dapr.io/block-shutdown-duration; -1: the injector's
	// default for a classic sidecar.
	BlockShutdown time.Duration

	// Ignored are dapr.io/* annotations present that have no effect here.
	Ignored []string

	// flags are the sidecar's arguments for the options of
	// sidecarflag.Annotated the pod sets, by the flag each writes.
	flags map[string][]string
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
// sidecar: the options of sidecarflag.Annotated, in its order, and the
// injector's own among them, where their errors have always come. Every
// error names the annotation, the value, and what is accepted.
func ParseSpec(a map[string]string) (*Spec, error) {
	s := &Spec{EnableMetrics: true, MetricsPort: ports.Metrics, BlockShutdown: -1, flags: map[string][]string{}}
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	s.AppID = a[AnnAppID]
	if s.AppID == "" {
		fail("%s is missing: every pod with %s: \"true\" needs an app id, a DNS-1123 label such as \"addapp\"", AnnAppID, AnnEnabled)
	} else if err := resolver.ValidateID(s.AppID); err != nil {
		fail("%s %q: %v", AnnAppID, s.AppID, err)
	}
	for _, o := range sidecarflag.Annotated {
		switch o.Annotation { // the injector's own, where their errors have always come
		case AnnEnableMetrics:
			s.parseContainer(a, fail)
		case AnnBlockShutdown:
			s.parseNative(a, fail)
		}
		s.parseOption(o, a, fail)
	}
	if s.AppPort != 0 && (s.AppPort == s.MetricsPort && s.EnableMetrics || slices.Contains(sidecarPorts, s.AppPort)) {
		fail("%s %d is a port of the sidecar (%v and the metrics port %d); give the app another", AnnAppPort, s.AppPort, sidecarPorts, s.MetricsPort)
	}
	for k := range a {
		if strings.HasPrefix(k, "dapr.io/") && !known(k) {
			s.Ignored = append(s.Ignored, k)
		}
	}
	sort.Strings(s.Ignored)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return s, nil
}

// parseOption checks the annotation of o and keeps the sidecar's arguments
// for it; a pod without it gets the flag's Default, if any.
func (s *Spec) parseOption(o sidecarflag.Option, a map[string]string, fail func(string, ...any)) {
	text, ok := a[o.Annotation]
	if !ok {
		if o.Default != "" {
			s.flags[o.Flag] = []string{"--" + o.Flag, o.Default}
		}
		return
	}
	v, err := optionValue(o, text)
	switch o.Annotation { // what the injector reads itself; refused, a bool is false
	case AnnAppPort:
		s.AppPort, _ = v.(int)
	case AnnEnableMetrics:
		s.EnableMetrics, _ = v.(bool)
	case AnnMetricsPort:
		if p, ok := v.(int); ok {
			s.MetricsPort = p
		}
	case AnnBlockShutdown:
		if d, ok := v.(time.Duration); ok {
			s.BlockShutdown = d
		}
	}
	if err != nil {
		fail("%v", err)
		return
	}
	args := optionArgs(o, v)
	if len(args) == 0 {
		return
	}
	for _, p := range sidecarflag.Annotated {
		if p.Annotation == o.Annotation {
			break
		}
		if _, both := a[p.Annotation]; both && p.Written() == o.Written() {
			fail("%s and %s set the same limit; give one", p.Annotation, o.Annotation)
			return
		}
	}
	s.flags[o.Written()] = args
}

// optionValue checks text, the value of o's annotation, and returns it as
// a bool, an int, an int64 of bytes, a time.Duration or a string.
func optionValue(o sidecarflag.Option, text string) (any, error) {
	refused := fmt.Errorf("%s %q is not valid; accepted: %s", o.Annotation, text, o.Accepted)
	switch r := o.Value.(type) {
	case sidecarflag.Bool:
		return parseBool(o.Annotation, text)
	case sidecarflag.Port:
		p, err := strconv.Atoi(text)
		if err != nil || p < 1 || !r.Flag.Has(p) {
			return nil, fmt.Errorf("%s %q is not a port; accepted: %s", o.Annotation, text, o.Accepted)
		}
		return p, nil
	case sidecarflag.Int:
		n, err := strconv.Atoi(text)
		if err != nil || !r.Has(n) {
			return nil, refused
		}
		return n, nil
	case sidecarflag.Size:
		// A quantity, as Kubernetes writes them: 16Mi, 1e6, 0.5Gi.
		qty, err := resource.ParseQuantity(text)
		if err != nil || qty.Sign() <= 0 || qty.Cmp(*resource.NewQuantity(r.Hi, resource.BinarySI)) > 0 || !r.Has(qty.Value()) {
			return nil, refused
		}
		return qty.Value(), nil
	case sidecarflag.Duration:
		d, err := time.ParseDuration(text)
		if err != nil || !r.Has(d) {
			return nil, refused
		}
		return d, nil
	case sidecarflag.Words:
		if !slices.Contains(r, text) {
			return nil, refused
		}
		return text, nil
	case sidecarflag.Name:
		if msgs := validation.IsDNS1123Subdomain(text); len(msgs) > 0 {
			return nil, fmt.Errorf("%s %q is not %s: %s", o.Annotation, text, o.Accepted, strings.Join(msgs, "; "))
		}
		return text, nil
	}
	return nil, fmt.Errorf("%s: the injector cannot read a %T", o.Annotation, o.Value)
}

// optionArgs are the sidecar's arguments for v, the checked value of o's
// annotation: none where v leaves the flag at its default.
func optionArgs(o sidecarflag.Option, v any) []string {
	flag := "--" + o.Written()
	switch v := v.(type) {
	case bool:
		switch b, ok := o.Value.(sidecarflag.Bool); {
		case ok && v == b.Default:
			return nil
		case v:
			return []string{flag}
		}
		return []string{flag + "=false"}
	case int:
		if r, ok := o.Value.(sidecarflag.Int); ok {
			if r.IsUnset(v) {
				return nil
			}
			if o.Unit != 0 {
				return []string{flag, strconv.FormatInt(int64(v)*o.Unit, 10)}
			}
		}
		return []string{flag, strconv.Itoa(v)}
	case int64:
		return []string{flag, strconv.FormatInt(v, 10)}
	case time.Duration:
		return []string{flag, v.String()}
	case string:
		return []string{flag, v}
	}
	return nil
}

// parseContainer checks the annotations of the sidecar's container: its
// image, resources, token Secrets and environment.
func (s *Spec) parseContainer(a map[string]string, fail func(string, ...any)) {
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
}

// parseNative checks dapr.io/enable-native-sidecar.
func (s *Spec) parseNative(a map[string]string, fail func(string, ...any)) {
	if v, ok := a[AnnNativeSidecar]; ok {
		b, err := parseBool(AnnNativeSidecar, v)
		if err != nil {
			fail("%v", err)
		}
		s.Native = &b
	}
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
