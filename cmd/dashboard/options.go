package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tandem-run/tandem/internal/dashboard"
)

// Options are the dashboard's flags.
type Options struct {
	// Listen is the address the page and its API are served on.
	Listen string
	// AllowRemote permits a Listen address other than loopback and
	// serves requests for any host name.
	AllowRemote bool
	// RegistryDir is the standalone registry folder.
	RegistryDir string
	// JaegerQuery is the base URL of Jaeger's query API, for the service
	// map; "" for none.
	JaegerQuery string
	// ZipkinQuery is the base URL of Zipkin's v2 API, for the same; at
	// most one of the two.
	ZipkinQuery string
	// Kubernetes lists the sidecars from the API server (the pods
	// annotated dapr.io/enabled: "true") instead of the registry.
	Kubernetes bool
	// Namespace limits Kubernetes mode to one namespace; "" is all.
	Namespace string
	// Kubeconfig is the kubeconfig file of Kubernetes mode; "" is the
	// pod's service account.
	Kubeconfig string
}

// defaultListen is where the dashboard is served unless --listen says.
const defaultListen = "127.0.0.1:8081"

// parseOptions reads args; getenv supplies $TANDEM_REGISTRY_DIR and the
// cache folder's defaults. A --listen address that is not loopback is an
// error unless --allow-remote is given.
func parseOptions(args []string, getenv func(string) string) (Options, error) {
	o := Options{}
	fs := flag.NewFlagSet("dashboard", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.Listen, "listen", defaultListen, "the address to serve the page on (host:port; loopback unless --allow-remote)")
	fs.BoolVar(&o.AllowRemote, "allow-remote", false, "allow a --listen address other than loopback, and requests for any host name; the page shows what every sidecar reports to whoever reaches it")
	fs.StringVar(&o.RegistryDir, "registry-dir", "", "the standalone registry folder the sidecars register in (default $TANDEM_REGISTRY_DIR, else <user cache dir>/tandem/registry)")
	fs.StringVar(&o.JaegerQuery, "jaeger-query", "", "the base URL of Jaeger's query API the traces are read from, such as http://127.0.0.1:16686 (default: no traces)")
	fs.StringVar(&o.ZipkinQuery, "zipkin-query", "", "the base URL of Zipkin's v2 API the traces are read from, such as http://127.0.0.1:9411 (instead of --jaeger-query)")
	fs.BoolVar(&o.Kubernetes, "kubernetes", false, "list the sidecars from the Kubernetes API server (the pods annotated dapr.io/enabled: \"true\") instead of the registry; the pod's service account, or --kubeconfig")
	fs.StringVar(&o.Namespace, "namespace", "", "with --kubernetes: the one namespace to list (default: every namespace)")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", getenv("KUBECONFIG"), "with --kubernetes: a kubeconfig file (env KUBECONFIG; default: the pod's service account)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fs.SetOutput(os.Stdout)
			fmt.Println("Usage: dashboard [flags]")
			fs.PrintDefaults()
		}
		return o, err
	}
	for _, a := range fs.Args() {
		if a != "" {
			return o, fmt.Errorf("unexpected argument %q: the dashboard takes flags only (-h lists them)", a)
		}
	}
	if err := checkListen(o.Listen, o.AllowRemote); err != nil {
		return o, err
	}
	if o.JaegerQuery != "" && o.ZipkinQuery != "" {
		return o, fmt.Errorf("--jaeger-query and --zipkin-query: give one trace store, not both")
	}
	if err := checkBaseURL("--jaeger-query", "Jaeger's query API", o.JaegerQuery, "http://127.0.0.1:16686"); err != nil {
		return o, err
	}
	if err := checkBaseURL("--zipkin-query", "Zipkin's v2 API", o.ZipkinQuery, "http://127.0.0.1:9411"); err != nil {
		return o, err
	}
	if o.Kubernetes {
		if o.RegistryDir != "" {
			return o, fmt.Errorf("--registry-dir and --kubernetes: the sidecars come from the registry or from the API server, give one")
		}
		if errs := validation.IsDNS1123Label(o.Namespace); o.Namespace != "" && len(errs) > 0 {
			return o, fmt.Errorf("--namespace %q: not a namespace name: %s", o.Namespace, strings.Join(errs, "; "))
		}
		return o, nil
	}
	if o.Namespace != "" {
		return o, fmt.Errorf("--namespace %q: a namespace is for --kubernetes only (the registry's apps are listed whatever their namespace)", o.Namespace)
	}
	o.Kubeconfig = ""
	if o.RegistryDir == "" {
		dir, err := defaultRegistry(getenv)
		if err != nil {
			return o, err
		}
		o.RegistryDir = dir
	}
	return o, nil
}

// checkBaseURL refuses a trace store's URL that is not http(s)://host[:port][/path]
// without a query or credentials; "" is none.
func checkBaseURL(flag, what, s, example string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%s %q: want the base URL of %s, http(s)://host:port with no query or credentials, such as %s", flag, s, what, example)
	}
	return nil
}

// checkListen refuses an address that is not host:port with a port in
// range, and one whose host is not loopback unless remote.
func checkListen(addr string, remote bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: want host:port, such as %s: %v", addr, defaultListen, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("--listen %q: the port must be a number from 0 to 65535", addr)
	}
	if !remote && !dashboard.LoopbackHost(host) {
		return fmt.Errorf("--listen %q: the dashboard binds loopback only (127.0.0.1, ::1 or localhost) unless --allow-remote is given: it shows every app's metadata to whoever reaches it", addr)
	}
	return nil
}

// defaultRegistry is standalone.DefaultDir read through getenv.
func defaultRegistry(getenv func(string) string) (string, error) {
	if d := getenv("TANDEM_REGISTRY_DIR"); d != "" {
		return d, nil
	}
	if d := getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "tandem", "registry"), nil
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".cache", "tandem", "registry"), nil
	}
	return "", fmt.Errorf("no registry folder: set --registry-dir or TANDEM_REGISTRY_DIR")
}
