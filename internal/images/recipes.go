package images

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/tandem-run/tandem/internal/release"
)

// Meta is what every image of one build is labelled with.
type Meta struct {
	// Version is the semantic version: the images' tag, their
	// org.opencontainers.image.version, and what `sidecar --version` prints.
	Version string
	// Revision is the commit the images are built from; Created its time,
	// which is the images' creation time.
	Revision string
	Created  time.Time
}

// Source is the project's repository, for org.opencontainers.image.source.
const Source = "https://github.com/tandem-run/tandem"

// caBundle is where the CA certificates are, on Debian and in our images:
// the sidecar (HTTPS trace collectors) and the injector (the API server)
// verify servers with them.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// Recipe is how one image of this repository is made.
type Recipe struct {
	// Name is the image's short name: it is <prefix>/<Name>:<version>.
	Name        string
	Description string
	// Product images are what `make images` builds and releases; the others
	// exist for the tests' real node (pause, redis, collector).
	Product bool
	spec    func(ctx context.Context, b *Builder) (Spec, error)
}

// Recipes are the images of this repository, the product's first.
var Recipes = []Recipe{
	{Name: "sidecar", Product: true, Description: "Tandem sidecar: service invocation, state and tracing beside an app, over Dapr's APIs",
		spec: goImage("./cmd/sidecar", []string{"3500/tcp", "50001/tcp", "50002/tcp", "3501/tcp", "9090/tcp"}, true)},
	{Name: "injector", Product: true, Description: "Tandem injector: the admission webhook that adds the sidecar to annotated pods",
		spec: goImage("./cmd/injector", []string{"4000/tcp"}, true)},
	{Name: "dashboard", Product: true, Description: "Tandem dashboard: a read-only page of the mesh's apps, their sidecars, the service map and traces",
		spec: goImage("./cmd/dashboard", []string{"8080/tcp"}, true)},
	{Name: "calculator-operator", Product: true, Description: "The distributed calculator's operator services (add, subtract, multiply, divide)",
		spec: goImage("./samples/calculator/cmd/operator", []string{"6000/tcp"}, false)},
	{Name: "calculator-frontend", Product: true, Description: "The distributed calculator's front end",
		spec: goImage("./samples/calculator/cmd/frontend", []string{"8080/tcp"}, false)},
	{Name: "pause", Description: "Pod sandbox: sleeps until it is signalled",
		spec: goImage("./tools/images/pause", nil, false)},
	{Name: "redis", Description: "This machine's redis-server with its shared libraries (tests only)",
		spec: redisImage},
	{Name: "collector", Description: "A Zipkin-API trace collector: Jaeger all-in-one, Zipkin on 9411 (tests only)",
		spec: collectorImage},
}

// Lookup is the recipe named name.
func Lookup(name string) (Recipe, error) {
	i := slices.IndexFunc(Recipes, func(r Recipe) bool { return r.Name == name })
	if i < 0 {
		var names []string
		for _, r := range Recipes {
			names = append(names, r.Name)
		}
		return Recipe{}, fmt.Errorf("no image %q; known: %s", name, strings.Join(names, ", "))
	}
	return Recipes[i], nil
}

// Builder builds the images of the repository at Root, compiling into Work.
type Builder struct {
	Root, Work string
	Meta       Meta
}

// Build makes the image of r.
func (b *Builder) Build(ctx context.Context, r Recipe) (v1.Image, error) {
	s, err := r.spec(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", r.Name, err)
	}
	s.Created = b.Meta.Created
	s.OS, s.Arch = "linux", runtime.GOARCH
	s.Labels = map[string]string{
		"org.opencontainers.image.title":       r.Name,
		"org.opencontainers.image.description": r.Description,
		"org.opencontainers.image.version":     b.Meta.Version,
		"org.opencontainers.image.revision":    b.Meta.Revision,
		"org.opencontainers.image.created":     b.Meta.Created.UTC().Format(time.RFC3339),
		"org.opencontainers.image.source":      Source,
	}
	return Build(s)
}

// GoRecipe is the recipe of an image holding the static Go program of pkg
// (a folder of this repository, such as ./tests/node/caller) as
// /<its name>, run as NonRoot: for a test's own programs.
func GoRecipe(name, pkg, description string) Recipe {
	return Recipe{Name: name, Description: description, spec: goImage(pkg, nil, false)}
}

// goImage is a static Go program as /<its name>, run as NonRoot; with ca,
// the CA certificates too.
func goImage(pkg string, ports []string, ca bool) func(context.Context, *Builder) (Spec, error) {
	return func(ctx context.Context, b *Builder) (Spec, error) {
		name := filepath.Base(pkg)
		bin, err := b.goBuild(ctx, pkg)
		if err != nil {
			return Spec{}, err
		}
		files := []File{{Path: "/" + name, Src: bin, Mode: 0o755}}
		if ca {
			files = append(files, File{Path: caBundle, Src: caBundle, Mode: 0o644})
		}
		return Spec{Files: files, Entrypoint: []string{"/" + name}, User: NonRoot, Ports: ports}, nil
	}
}

// goBuild compiles pkg statically and reproducibly: no cgo, no paths of
// this machine, no VCS stamp (the revision is a label), main.version set.
func (b *Builder) goBuild(ctx context.Context, pkg string) (string, error) {
	out := filepath.Join(b.Work, filepath.Base(pkg))
	cmd := release.Command(ctx, b.Root, pkg, out, b.Meta.Version)
	cmd.Env = append(cmd.Env, "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
	}
	return out, nil
}

// redisImage is this machine's redis-server (Debian's package) and every
// shared library it loads, at the paths it loads them from.
func redisImage(ctx context.Context, _ *Builder) (Spec, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return Spec{}, fmt.Errorf("redis-server is not installed (Debian package redis-server; .ci/deps installs it)")
	}
	libs, err := sharedLibraries(ctx, bin)
	if err != nil {
		return Spec{}, err
	}
	files := []File{{Path: "/usr/bin/redis-server", Src: bin, Mode: 0o755}}
	for _, l := range libs {
		files = append(files, File{Path: l, Src: l, Mode: 0o755})
	}
	return Spec{Files: files, Entrypoint: []string{"/usr/bin/redis-server"}, User: NonRoot, Ports: []string{"6379/tcp"}}, nil
}

// lddLine matches the paths ldd prints: "libc.so.6 => /lib/.../libc.so.6 (0x...)"
// and "/lib64/ld-linux-x86-64.so.2 (0x...)".
var lddLine = regexp.MustCompile(`(?:=> )?(/\S+) \(0x[0-9a-f]+\)$`)

// sharedLibraries are the files the dynamic loader maps for bin, the loader
// itself included, sorted.
func sharedLibraries(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := lddLine.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			libs = append(libs, m[1])
		}
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd %s printed no libraries:\n%s", bin, out)
	}
	slices.Sort(libs)
	return libs, nil
}

// collectorImage is Jaeger all-in-one, built by tools/build, collecting
// Zipkin spans on 9411 (the API the sidecar exports to) and answering
// queries on 16686, with its in-memory store.
func collectorImage(ctx context.Context, b *Builder) (Spec, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(b.Root, "tools", "build"), "jaeger")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return Spec{}, fmt.Errorf("tools/build jaeger: %w", err)
	}
	bin := strings.TrimSpace(string(out))
	return Spec{
		Files:      []File{{Path: "/jaeger", Src: bin, Mode: 0o755}},
		Entrypoint: []string{"/jaeger", "--collector.zipkin.host-port=:9411"},
		User:       NonRoot,
		Ports:      []string{"9411/tcp", "16686/tcp"},
	}, nil
}
