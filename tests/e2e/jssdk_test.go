package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// TestJSSDK runs the Dapr JavaScript SDK (@dapr/dapr 3.4.1, from npm, with
// the lockfile in tests/jssdk) against real sidecars over HTTP and gRPC:
// tests/jssdk/sdk.test.mjs under node --test, which holds the assertions,
// one for each row of docs/compatibility.md's table among them. Node and
// npm are .ci/deps's; the packages are installed into a folder of the test
// with npm ci (npm's cache makes that quick after the first run).
func TestJSSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("installs the SDK from the npm registry and needs Node.js: make test runs it")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed; .ci/deps installs it (Debian's nodejs and npm)")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatal("npm is not installed; .ci/deps installs it (Debian's npm)")
	}
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json", ".npmrc", "sdk.test.mjs"} {
		b, err := os.ReadFile(filepath.Join("..", "jssdk", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}

	redis := redisserver.Start(t)
	res := t.TempDir()
	if err := os.WriteFile(filepath.Join(res, "statestore.yaml"), resources.RedisYAML("statestore", redis.Addr), 0o644); err != nil {
		t.Fatal(err)
	}
	pubsub := map[string][]byte{"pubsub.yaml": resources.PubSubYAML("pubsub", "pubsub.redis", "redisHost", redis.Addr)}
	if err := os.WriteFile(filepath.Join(res, "pubsub.yaml"), pubsub["pubsub.yaml"], 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	appPort, _ := w.app("jsapp")
	target := w.sidecar("jsapp", appPort)
	client := w.sidecar("jsclient", 0, "--resources-path", res)
	// The sidecars of the test's DaprServers, which start later: their
	// apps' ports are chosen here.
	ports, err := proc.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	subHTTP, _ := w.pubsubSidecarApp("jssub-http", ports[0], pubsub)
	subGRPC, _ := w.pubsubSidecarApp("jssub-grpc", ports[1], pubsub, "--app-protocol", "grpc")
	target.waitHealthy(t)
	client.waitHealthy(t)

	run := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "sdk.test.mjs")
	run.Dir = dir
	run.Env = append(os.Environ(), "HTTP_PORT="+itoa(client.httpPort), "GRPC_PORT="+itoa(client.grpcPort),
		"TARGET=jsapp", "CLIENT_ID=jsclient", "NO_COLOR=1",
		"SUB_HTTP_APP_PORT="+itoa(ports[0]), "SUB_HTTP_DAPR_PORT="+itoa(subHTTP.httpPort),
		"SUB_GRPC_APP_PORT="+itoa(ports[1]), "SUB_GRPC_DAPR_PORT="+itoa(subGRPC.httpPort))
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("the JS SDK tests failed: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
