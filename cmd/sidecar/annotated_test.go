package main

import (
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-run/tandem/internal/injector"
	"github.com/tandem-run/tandem/internal/sidecarflag"
)

// probe is a value of an option's annotation, and the same value as its
// flag takes it.
type probe struct {
	annotation, flag string
	// narrower, when set, says why the annotation refuses a value its flag
	// takes.
	narrower string
}

// probes are the values at each bound of an option and one past it, and a
// few in the annotation's own syntax.
func probes(o sidecarflag.Option) []probe {
	same := func(vs ...string) []probe {
		var ps []probe
		for _, v := range vs {
			ps = append(ps, probe{annotation: v, flag: v})
		}
		return ps
	}
	itoa := strconv.Itoa
	switch r := o.Value.(type) {
	case sidecarflag.Bool:
		return append(same("true", "false", "1", "0", "maybe"), probe{annotation: "yes", flag: "true"}, probe{annotation: "off", flag: "false"})
	case sidecarflag.Port:
		return append(same("1", itoa(r.Flag.Hi), itoa(r.Flag.Hi+1), "-1", "http"),
			probe{annotation: "0", flag: "0", narrower: "a pod declares its ports: the flag's 0 (none, or any free port) has no place in it"})
	case sidecarflag.Int:
		ps := same(itoa(r.Lo), itoa(r.Hi), itoa(r.Lo-1), itoa(r.Hi+1), "99999999999999999999", "1.5")
		if r.Unset {
			ps = append(ps, same("-1", "-2")...)
		}
		return ps
	case sidecarflag.Size:
		i64 := func(n int64) string { return strconv.FormatInt(n, 10) }
		return append(same(i64(r.Lo), i64(r.Hi), i64(r.Lo-1), i64(r.Hi+1), "16Mi"), probe{annotation: "1e6", flag: "1000000"})
	case sidecarflag.Duration:
		return same(r.Lo.String(), r.Hi.String(), (r.Lo - time.Nanosecond).String(), (r.Hi + time.Nanosecond).String(), "5s", "5")
	case sidecarflag.Words:
		return same(append([]string{"bogus"}, r...)...)
	case sidecarflag.Name:
		return append(same("tracing"), probe{annotation: "Tracing_Config", flag: "Tracing_Config", narrower: "a Configuration's name; the flag takes a file's path too"})
	}
	return nil
}

// TestAnnotationsAreFlags: every option a pod's annotation sets
// (sidecarflag.Annotated) is a flag this sidecar accepts, with the same
// bounds. At each bound of an option and one past it, the injector admits
// the annotation exactly when the sidecar accepts the flag, but where the
// option says why the annotation takes less; and the arguments the injector
// writes for an admitted value set the sidecar's Options as the flag does.
func TestAnnotationsAreFlags(t *testing.T) {
	cfg := injector.Config{SidecarImage: "tandem/sidecar:dev", ClusterDomain: "cluster.local", BlockShutdown: injector.DefaultBlockShutdown}
	base, err := injectedSidecar(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range sidecarflag.Annotated {
		ps := probes(o)
		if len(ps) == 0 {
			t.Errorf("%s: no probes for a %T", o.Annotation, o.Value)
		}
		for _, p := range ps {
			t.Run(o.Annotation+"="+p.annotation, func(t *testing.T) {
				env := injectedEnv(t, base.Env)
				flagArgs := append(append([]string{}, base.Args...), "--"+o.Flag+"="+p.flag)
				want, flagErr := parseOptions(flagArgs, env)
				c, admitErr := injectedSidecar(cfg, map[string]string{o.Annotation: p.annotation})
				switch {
				case admitErr == nil && flagErr != nil:
					t.Fatalf("the injector admits %s %q; the sidecar refuses --%s=%s: %v", o.Annotation, p.annotation, o.Flag, p.flag, flagErr)
				case admitErr != nil && flagErr == nil && p.narrower == "":
					t.Fatalf("the sidecar accepts --%s=%s; the injector refuses %s %q: %v", o.Flag, p.flag, o.Annotation, p.annotation, admitErr)
				case admitErr == nil && p.narrower != "":
					t.Fatalf("the injector admits %s %q, which it should refuse: %s", o.Annotation, p.annotation, p.narrower)
				case admitErr != nil:
					return
				}
				got, err := parseOptions(c.Args, injectedEnv(t, c.Env))
				if err != nil {
					t.Fatalf("the sidecar refuses the injector's arguments %q: %v", c.Args, err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("the injector's arguments %q set\n%+v\nthe flag --%s=%s sets\n%+v", c.Args, got, o.Flag, p.flag, want)
				}
			})
		}
	}
}

// injectedSidecar is the sidecar container that Inject adds to a pod of
// one app container with these annotations, beside dapr.io/enabled and
// dapr.io/app-id.
func injectedSidecar(cfg injector.Config, annotations map[string]string) (corev1.Container, error) {
	a := map[string]string{injector.AnnEnabled: "true", injector.AnnAppID: "orders"}
	for k, v := range annotations {
		a[k] = v
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: a}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
	ops, _, err := injector.Inject(cfg, pod)
	for _, op := range ops {
		if c, ok := op.Value.(corev1.Container); ok && c.Name == injector.SidecarName {
			return c, nil
		}
	}
	if err == nil {
		err = errNoSidecar
	}
	return corev1.Container{}, err
}

var errNoSidecar = errors.New("Inject added no sidecar container")
