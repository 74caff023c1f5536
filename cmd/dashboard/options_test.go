package main

import (
	"strings"
	"testing"
)

func TestParseOptions(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	home := env(map[string]string{"HOME": "/home/u"})
	cases := []struct {
		name    string
		args    []string
		getenv  func(string) string
		want    Options
		wantErr string
	}{
		{name: "defaults", getenv: home, want: Options{Listen: "127.0.0.1:8081", RegistryDir: "/home/u/.cache/tandem/registry"}},
		{name: "registry from env", getenv: env(map[string]string{"TANDEM_REGISTRY_DIR": "/r", "HOME": "/h"}), want: Options{Listen: "127.0.0.1:8081", RegistryDir: "/r"}},
		{name: "xdg cache", getenv: env(map[string]string{"XDG_CACHE_HOME": "/x", "HOME": "/h"}), want: Options{Listen: "127.0.0.1:8081", RegistryDir: "/x/tandem/registry"}},
		{name: "flag beats env", args: []string{"--registry-dir", "/f"}, getenv: env(map[string]string{"TANDEM_REGISTRY_DIR": "/r"}), want: Options{Listen: "127.0.0.1:8081", RegistryDir: "/f"}},
		{name: "ipv6 loopback", args: []string{"--listen", "[::1]:9000"}, getenv: home, want: Options{Listen: "[::1]:9000", RegistryDir: "/home/u/.cache/tandem/registry"}},
		{name: "localhost", args: []string{"--listen", "localhost:0"}, getenv: home, want: Options{Listen: "localhost:0", RegistryDir: "/home/u/.cache/tandem/registry"}},
		{name: "all interfaces refused", args: []string{"--listen", "0.0.0.0:8081"}, getenv: home, wantErr: `--listen "0.0.0.0:8081": the dashboard binds loopback only`},
		{name: "empty host refused", args: []string{"--listen", ":8081"}, getenv: home, wantErr: "binds loopback only"},
		{name: "a name refused", args: []string{"--listen", "example.internal:8081"}, getenv: home, wantErr: "binds loopback only"},
		{name: "all interfaces allowed", args: []string{"--listen", "0.0.0.0:8081", "--allow-remote"}, getenv: home, want: Options{Listen: "0.0.0.0:8081", AllowRemote: true, RegistryDir: "/home/u/.cache/tandem/registry"}},
		{name: "no port", args: []string{"--listen", "127.0.0.1"}, getenv: home, wantErr: "want host:port"},
		{name: "port out of range", args: []string{"--listen", "127.0.0.1:70000"}, getenv: home, wantErr: "from 0 to 65535"},
		{name: "positional", args: []string{"x"}, getenv: home, wantErr: `unexpected argument "x"`},
		{name: "empty positional ignored", args: []string{""}, getenv: home, want: Options{Listen: "127.0.0.1:8081", RegistryDir: "/home/u/.cache/tandem/registry"}},
		{name: "jaeger", args: []string{"--jaeger-query", "http://127.0.0.1:16686"}, getenv: home, want: Options{Listen: "127.0.0.1:8081", RegistryDir: "/home/u/.cache/tandem/registry", JaegerQuery: "http://127.0.0.1:16686"}},
		{name: "jaeger not a URL", args: []string{"--jaeger-query", "127.0.0.1:16686"}, getenv: home, wantErr: "want the base URL of Jaeger's query API"},
		{name: "jaeger with a query", args: []string{"--jaeger-query", "http://j:16686/?x=1"}, getenv: home, wantErr: "want the base URL"},
		{name: "jaeger with credentials", args: []string{"--jaeger-query", "http://u:p@j:16686"}, getenv: home, wantErr: "want the base URL"},
		{name: "zipkin", args: []string{"--zipkin-query", "http://127.0.0.1:9411/"}, getenv: home, want: Options{Listen: "127.0.0.1:8081", RegistryDir: "/home/u/.cache/tandem/registry", ZipkinQuery: "http://127.0.0.1:9411/"}},
		{name: "zipkin not a URL", args: []string{"--zipkin-query", "zipkin:9411"}, getenv: home, wantErr: "want the base URL of Zipkin's v2 API"},
		{name: "both trace stores", args: []string{"--zipkin-query", "http://z:9411", "--jaeger-query", "http://j:16686"}, getenv: home, wantErr: "give one trace store, not both"},
		{name: "no registry", getenv: env(nil), wantErr: "no registry folder"},
		{name: "kubernetes", args: []string{"--kubernetes"}, getenv: env(nil), want: Options{Listen: "127.0.0.1:8081", Kubernetes: true}},
		{name: "kubernetes, one namespace, kubeconfig from env", args: []string{"--kubernetes", "--namespace", "shop"}, getenv: env(map[string]string{"KUBECONFIG": "/k"}),
			want: Options{Listen: "127.0.0.1:8081", Kubernetes: true, Namespace: "shop", Kubeconfig: "/k"}},
		{name: "kubernetes and a registry", args: []string{"--kubernetes", "--registry-dir", "/r"}, getenv: home, wantErr: "give one"},
		{name: "a namespace that is not one", args: []string{"--kubernetes", "--namespace", "Shop_1"}, getenv: home, wantErr: `--namespace "Shop_1": not a namespace name`},
		{name: "a namespace without kubernetes", args: []string{"--namespace", "shop"}, getenv: home, wantErr: "for --kubernetes only"},
		{name: "kubeconfig ignored without kubernetes", getenv: env(map[string]string{"KUBECONFIG": "/k", "HOME": "/home/u"}), want: Options{Listen: "127.0.0.1:8081", RegistryDir: "/home/u/.cache/tandem/registry"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseOptions(c.args, c.getenv)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}
