package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-run/tandem/internal/ca"
	"github.com/tandem-run/tandem/internal/injector"
)

// Options is everything the command line and environment say.
type Options struct {
	// CA, when set, serves the sidecars' certificate authority and gives
	// every injected sidecar mutual TLS (Injector.MTLS).
	CA            *CAOptions
	ListenAddress string // host:port of the HTTPS webhook server
	CertFile      string
	KeyFile       string
	TLSHosts      []string // names of the self-made serving certificate
	WebhookConfig string   // MutatingWebhookConfiguration whose caBundle to set; "" none
	Kubeconfig    string   // "": in-cluster
	Services      bool     // run the headless Services controller
	Injector      injector.Config
	// NativeSidecars is auto (native sidecars where the cluster runs them,
	// asked of the API server at start), true or false (the default; pods
	// may still choose with dapr.io/enable-native-sidecar).
	NativeSidecars string
	LogLevel       slog.Level
	LogJSON        bool
}

// parseOptions parses the flags and environment. It is pure.
func parseOptions(args []string, getenv func(string) string) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("injector", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var hosts, users, pull, logLevel, service, namespace string
	var cpuReq, cpuLim, memReq, memLim string
	fs.StringVar(&o.ListenAddress, "listen-address", ":4000", "host:port of the HTTPS webhook server")
	fs.StringVar(&o.CertFile, "tls-cert-file", "", "serving certificate (PEM); reloaded when it changes. None: a CA and certificate are made at start")
	fs.StringVar(&o.KeyFile, "tls-key-file", "", "key of --tls-cert-file (PEM)")
	fs.StringVar(&service, "service-name", "tandem-injector", "the injector's Service, for the self-made certificate's names")
	fs.StringVar(&namespace, "namespace", getenv("NAMESPACE"), "the injector's namespace (env NAMESPACE)")
	fs.StringVar(&hosts, "tls-hosts", "", "comma-separated names (or IPs) of the self-made certificate; default <service>.<namespace>.svc and .svc.<cluster-domain>")
	fs.StringVar(&o.WebhookConfig, "webhook-config-name", "tandem-injector", "MutatingWebhookConfiguration whose caBundle the self-made CA goes into; empty: none")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", getenv("KUBECONFIG"), "kubeconfig file (env KUBECONFIG); default: the in-cluster service account")
	fs.BoolVar(&o.Services, "services-controller", true, "keep the headless <app-id>-dapr Service of each annotated Deployment and StatefulSet")
	fs.StringVar(&o.Injector.SidecarImage, "sidecar-image", getenv("SIDECAR_IMAGE"), "the sidecar image (env SIDECAR_IMAGE); pods may override it with dapr.io/sidecar-image")
	fs.StringVar(&pull, "sidecar-pull-policy", "IfNotPresent", "Always, IfNotPresent or Never")
	fs.StringVar(&cpuReq, "sidecar-cpu-request", "10m", "default CPU request of a sidecar (empty: none)")
	fs.StringVar(&cpuLim, "sidecar-cpu-limit", "", "default CPU limit of a sidecar (empty: none)")
	fs.StringVar(&memReq, "sidecar-memory-request", "32Mi", "default memory request of a sidecar (empty: none)")
	fs.StringVar(&memLim, "sidecar-memory-limit", "256Mi", "default memory limit of a sidecar (empty: none)")
	fs.StringVar(&o.Injector.ClusterDomain, "cluster-domain", "cluster.local", "the cluster's DNS domain")
	fs.StringVar(&o.NativeSidecars, "native-sidecars", "auto", "inject native sidecars (init containers with restartPolicy Always, Kubernetes 1.29+): auto (where the cluster runs them), true or false; pods choose with dapr.io/enable-native-sidecar")
	fs.DurationVar(&o.Injector.BlockShutdown, "sidecar-block-shutdown-duration", injector.DefaultBlockShutdown, "how long a classic sidecar goes on serving after SIGTERM while its app finishes (pods: dapr.io/block-shutdown-duration); 0 to 1h")
	fs.StringVar(&users, "allowed-users", "", "comma-separated users whose pod creations are injected too, e.g. system:serviceaccount:ci:deployer (workload controllers always are)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&o.LogJSON, "log-as-json", false, "log as JSON")
	var mtls bool
	caOpts := CAOptions{}
	fs.BoolVar(&mtls, "mtls", false, "serve the sidecars' certificate authority and give every injected sidecar mutual TLS")
	fs.StringVar(&caOpts.ListenAddress, "ca-listen-address", ":8443", "host:port of the certificate authority's HTTPS server (with --mtls)")
	fs.StringVar(&caOpts.Secret, "ca-secret", "tandem-ca", "Secret of the injector's namespace holding the CA's root (ca.crt, ca.key; trust-bundle.pem for a rotation); made at first start when missing")
	fs.StringVar(&caOpts.TrustDomain, "trust-domain", "public", "trust domain of the sidecars' SPIFFE IDs")
	fs.StringVar(&caOpts.BundleConfigMap, "trust-bundle-configmap", "tandem-trust-bundle", "ConfigMap (key ca.crt) kept in every namespace with injected pods")
	fs.DurationVar(&caOpts.TTL, "workload-cert-ttl", 24*time.Hour, "how long sidecar certificates are valid (10s to 720h)")
	var allowPlain bool
	fs.BoolVar(&allowPlain, "allow-plaintext-peers", false, "with --mtls: sidecars also take calls from, and call, sidecars without mutual TLS (the window of an upgrade from them)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			var b strings.Builder
			b.WriteString("Usage: injector --sidecar-image IMAGE [flags]\n\n")
			fs.SetOutput(&b)
			fs.PrintDefaults()
			return o, &usageError{b.String()}
		}
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q: every option is a flag", fs.Arg(0))
	}
	if o.Injector.SidecarImage == "" {
		return o, errors.New("--sidecar-image (or SIDECAR_IMAGE) is required: the image of the sidecar to inject")
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return o, errors.New("--tls-cert-file and --tls-key-file go together: give both, or neither for a self-made certificate")
	}
	switch o.NativeSidecars {
	case "auto", "true", "false":
	default:
		return o, fmt.Errorf("--native-sidecars %q is not valid; accepted: auto, true, false", o.NativeSidecars)
	}
	if b := o.Injector.BlockShutdown; b < 0 || b > time.Hour {
		return o, fmt.Errorf("--sidecar-block-shutdown-duration %s is not valid; accepted: 0s to 1h, e.g. 5s", b)
	}
	switch p := corev1.PullPolicy(pull); p {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
		o.Injector.PullPolicy = p
	default:
		return o, fmt.Errorf("--sidecar-pull-policy %q is not valid; accepted: Always, IfNotPresent, Never", pull)
	}
	for _, q := range []struct {
		flag, v string
		list    *corev1.ResourceList
		name    corev1.ResourceName
	}{
		{"--sidecar-cpu-request", cpuReq, &o.Injector.Resources.Requests, corev1.ResourceCPU},
		{"--sidecar-cpu-limit", cpuLim, &o.Injector.Resources.Limits, corev1.ResourceCPU},
		{"--sidecar-memory-request", memReq, &o.Injector.Resources.Requests, corev1.ResourceMemory},
		{"--sidecar-memory-limit", memLim, &o.Injector.Resources.Limits, corev1.ResourceMemory},
	} {
		if q.v == "" {
			continue
		}
		qty, err := injector.ParseResource(q.flag, q.name, q.v)
		if err != nil {
			return o, err
		}
		if *q.list == nil {
			*q.list = corev1.ResourceList{}
		}
		(*q.list)[q.name] = qty
	}
	o.Injector.AllowedUsers = append([]string(nil), injector.DefaultAllowedUsers...)
	for u := range strings.SplitSeq(users, ",") {
		if u = strings.TrimSpace(u); u != "" {
			o.Injector.AllowedUsers = append(o.Injector.AllowedUsers, u)
		}
	}
	for h := range strings.SplitSeq(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			o.TLSHosts = append(o.TLSHosts, h)
		}
	}
	if len(o.TLSHosts) == 0 && o.CertFile == "" {
		if namespace == "" {
			return o, errors.New("--namespace (or NAMESPACE) is needed to name the self-made certificate; or give --tls-hosts, or --tls-cert-file and --tls-key-file")
		}
		o.TLSHosts = []string{service + "." + namespace + ".svc", service + "." + namespace + ".svc." + o.Injector.ClusterDomain}
	}
	if err := o.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return o, fmt.Errorf("--log-level %q is not valid; accepted: debug, info, warn, error", logLevel)
	}
	if mtls {
		if namespace == "" {
			return o, errors.New("--mtls needs --namespace (or NAMESPACE): the CA's Secret and Service live there")
		}
		if caOpts.TTL < 10*time.Second || caOpts.TTL > 720*time.Hour {
			return o, fmt.Errorf("--workload-cert-ttl %s is not valid; accepted: 10s to 720h", caOpts.TTL)
		}
		_, port, err := net.SplitHostPort(caOpts.ListenAddress)
		if err != nil || port == "" || port == "0" {
			return o, fmt.Errorf("--ca-listen-address %q is not valid: host:port with a fixed port, e.g. :8443", caOpts.ListenAddress)
		}
		caOpts.Namespace = namespace
		caOpts.Hosts = append([]string{service + "." + namespace + ".svc", service + "." + namespace + ".svc." + o.Injector.ClusterDomain}, o.TLSHosts...)
		o.CA = &caOpts
		o.Injector.MTLS = &injector.MTLS{
			SentryAddress:   "https://" + net.JoinHostPort(caOpts.Hosts[0], port),
			TrustDomain:     caOpts.TrustDomain,
			BundleConfigMap: caOpts.BundleConfigMap,
			Audience:        ca.Audience,

			AllowPlaintextPeers: allowPlain,
		}
	}
	return o, nil
}

// CAOptions configure the sidecars' certificate authority.
type CAOptions struct {
	ListenAddress   string
	Namespace       string
	Secret          string
	TrustDomain     string
	BundleConfigMap string
	TTL             time.Duration
	Hosts           []string // names of its serving certificate
}

type usageError struct{ text string }

func (e *usageError) Error() string { return e.text }
