// Package node tests the product on a real Kubernetes node of this
// machine (internal/testutil/node): the images built by internal/images and
// imported into containerd, pods run by a real kubelet.
//
// The node needs root, containerd, runc and the CNI plugins (.ci/deps) and
// minutes: run it on its own with a long timeout, as make test does:
//
//	go test -count=1 -timeout 40m ./tests/node
//
// TestMain builds the images, starts the node once for every test, and
// stops it at the end, also when a test fails, on Ctrl-C, and shortly
// before the test binary's own timeout would kill it without cleanup;
// a run killed anyway is swept by the next one.
package node

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/images"
	"github.com/tandem-run/tandem/internal/testutil/node"
)

var (
	cluster *node.Cluster
	// built are the images on the node, by recipe name.
	built   = map[string]images.Built{}
	version string
	repo    string
)

// minTimeout is the least -timeout the tests run with: the first build of
// the Kubernetes programs and the images alone can take ten minutes.
const minTimeout = 20 * time.Minute

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Println("tests/node: skipped: the real node needs root")
		os.Exit(0)
	}
	timeout := flag.Lookup("test.timeout").Value.(flag.Getter).Get().(time.Duration)
	if timeout > 0 && timeout < minTimeout {
		fmt.Printf("tests/node: -timeout %s is too short for a real node; run with -timeout 40m (make test does)\n", timeout)
		os.Exit(1)
	}
	os.Exit(run(m, timeout))
}

func run(m *testing.M, timeout time.Duration) int {
	began := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if repo, err = filepath.Abs("../.."); err != nil {
		log.Print(err)
		return 1
	}
	if version, err = images.ChartAppVersion(repo); err != nil {
		log.Print(err)
		return 1
	}
	meta, err := images.RepoMeta(repo, version)
	if err != nil {
		log.Print(err)
		return 1
	}
	out, err := os.MkdirTemp("", "tandem-node-images-")
	if err != nil {
		log.Print(err)
		return 1
	}
	defer os.RemoveAll(out)
	recipes := append(images.Recipes,
		images.GoRecipe("caller", "./tests/node/caller", "Calls an app through its sidecar (tests/node's Jobs and load)"),
		images.GoRecipe("pubsubapp", "./tests/node/pubsubapp", "Publishes through its sidecar and reports its deliveries (tests/node's pub/sub)"))
	list, err := images.BuildAll(ctx, images.Options{Root: repo, Out: out, Meta: meta, Prefix: "tandem"}, recipes)
	if err != nil {
		log.Printf("building the images: %v", err)
		return 1
	}
	var files []string
	for _, b := range list {
		built[b.Name] = b
		files = append(files, b.File)
	}
	log.Printf("tests/node: %d images built in %s", len(list), time.Since(began).Round(100*time.Millisecond))

	c, err := node.Start(ctx, node.Options{Repo: repo, Images: files, Pause: built["pause"].Ref, Logf: log.Printf})
	if err != nil {
		log.Printf("starting the node: %v", err)
		return 1
	}
	cluster = c
	// Stop the node on Ctrl-C, and before the test binary's timeout,
	// which would end this process without running anything else.
	var deadline <-chan time.Time
	if timeout > 0 {
		deadline = time.After(time.Until(began.Add(timeout - 2*time.Minute)))
	}
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-finished:
			return
		case <-ctx.Done():
			log.Print("tests/node: interrupted; stopping the node")
		case <-deadline:
			log.Print("tests/node: the test binary's timeout is 2 minutes away; stopping the node")
		}
		if err := c.Stop(); err != nil {
			log.Print(err)
		}
		os.Exit(1)
	}()
	code := m.Run()
	if code != 0 {
		// What the node's programs said last, for a failed run in CI.
		for _, name := range []string{"kubelet", "containerd", "kube-apiserver"} {
			out := c.Output(name)
			if len(out) > 8<<10 {
				out = "...\n" + out[len(out)-8<<10:]
			}
			log.Printf("--- the end of %s's output ---\n%s", name, out)
		}
	}
	start := time.Now()
	if err := c.Stop(); err != nil {
		log.Printf("stopping the node: %v", err)
		code = 1
	}
	log.Printf("tests/node: node stopped in %s; whole run %s", time.Since(start).Round(100*time.Millisecond), time.Since(began).Round(time.Second))
	return code
}
