package images

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// clone checks out commit of the repository into a fresh folder: a clean
// tree, without the working tree's changes.
func clone(t *testing.T, root, commit string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	for _, args := range [][]string{
		{"clone", "--quiet", "--shared", "--no-checkout", root, dir},
		{"-C", dir, "-c", "advice.detachedHead=false", "checkout", "--quiet", commit},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return dir
}

func head(t *testing.T, root string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// product is the recipes of the product's images, and pause.
func product(t *testing.T) []Recipe {
	var rs []Recipe
	for _, r := range Recipes {
		if r.Product || r.Name == "pause" {
			rs = append(rs, r)
		}
	}
	return rs
}

// TestReproducible builds the images twice, from two clean checkouts of the
// same commit in two folders into two others: the digests and the tarballs'
// bytes are the same.
func TestReproducible(t *testing.T) {
	root := repoRoot(t)
	commit := head(t, root)
	var lists [2][]Built
	for i := range lists {
		src := clone(t, root, commit)
		meta, err := RepoMeta(src, "0.1.0-test")
		if err != nil {
			t.Fatal(err)
		}
		if meta.Revision != commit {
			t.Fatalf("revision %q, want %q", meta.Revision, commit)
		}
		if lists[i], err = BuildAll(ctxT(t), Options{Root: src, Out: filepath.Join(t.TempDir(), "out"), Meta: meta, Prefix: "tandem"}, product(t)); err != nil {
			t.Fatal(err)
		}
	}
	a, b := lists[0], lists[1]
	if len(a) != len(product(t)) || len(b) != len(a) {
		t.Fatalf("built %d and %d images, want %d", len(a), len(b), len(product(t)))
	}
	for i := range a {
		if a[i].Ref != b[i].Ref || a[i].Digest != b[i].Digest {
			t.Errorf("%s: %s then %s %s", a[i].Ref, a[i].Digest, b[i].Ref, b[i].Digest)
		}
		fa, _ := os.ReadFile(a[i].File)
		fb, _ := os.ReadFile(b[i].File)
		if len(fa) == 0 || !bytes.Equal(fa, fb) {
			t.Errorf("%s: the tarballs differ (%d and %d bytes)", a[i].Ref, len(fa), len(fb))
		}
	}
	la, _ := os.ReadFile(filepath.Join(filepath.Dir(a[0].File), "images.txt"))
	if want := a[0].Ref + " " + a[0].Digest + "\n"; !strings.HasPrefix(string(la), want) {
		t.Errorf("images.txt starts %q, want %q", la, want)
	}
}

// build builds one recipe of the working tree into a temporary folder.
func build(t *testing.T, names ...string) []Built {
	t.Helper()
	root := repoRoot(t)
	meta := Meta{Version: "1.2.3-test.1", Revision: "0123456789abcdef", Created: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	var rs []Recipe
	for _, n := range names {
		r, err := Lookup(n)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	built, err := BuildAll(ctxT(t), Options{Root: root, Out: t.TempDir(), Meta: meta, Prefix: "tandem"}, rs)
	if err != nil {
		t.Fatal(err)
	}
	return built
}

// readOCI reads an OCI tarball back with go-containerregistry's layout
// reader, checks it, and returns its one image and the index's descriptor.
func readOCI(t *testing.T, file string) (v1.Image, v1.Descriptor) {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("tar", "-xf", file, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("untar %s: %v\n%s", file, err, out)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 {
		t.Fatalf("%s: %d manifests, want 1", file, len(m.Manifests))
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img, m.Manifests[0]
}

// layerFiles reads the image's one layer: each entry's header and, for
// files, its contents.
func layerFiles(t *testing.T, img v1.Image) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var hdrs []*tar.Header
	data := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
		if h.Typeflag == tar.TypeReg {
			data[h.Name], _ = io.ReadAll(tr)
		}
	}
	return hdrs, data
}

func TestSidecarImage(t *testing.T) {
	b := build(t, "sidecar")[0]
	if b.Ref != "tandem/sidecar:1.2.3-test.1" {
		t.Errorf("ref %q", b.Ref)
	}
	img, desc := readOCI(t, b.File)
	if desc.Digest.String() != b.Digest {
		t.Errorf("index names %s, built %s", desc.Digest, b.Digest)
	}
	if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != "1.2.3-test.1" {
		t.Errorf("ref.name %q", got)
	}
	if got := desc.Annotations["io.containerd.image.name"]; !strings.HasSuffix(got, "/tandem/sidecar:1.2.3-test.1") {
		t.Errorf("io.containerd.image.name %q", got)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", mt)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/sidecar"}) || cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("user %q, entrypoint %q, platform %s/%s", c.User, c.Entrypoint, cf.OS, cf.Architecture)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.version":  "1.2.3-test.1",
		"org.opencontainers.image.revision": "0123456789abcdef",
		"org.opencontainers.image.created":  "2026-11-30T12:00:00Z",
		"org.opencontainers.image.source":   Source,
		"org.opencontainers.image.title":    "sidecar",
	} {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if _, ok := c.ExposedPorts["3500/tcp"]; !ok {
		t.Errorf("ports %v lack 3500/tcp", c.ExposedPorts)
	}

	hdrs, data := layerFiles(t, img)
	var names []string
	for _, h := range hdrs {
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(cf.Created.Time) {
			t.Errorf("%s: owner %d:%d, mtime %s; want 0:0 at %s", h.Name, h.Uid, h.Gid, h.ModTime, cf.Created.Time)
		}
	}
	want := []string{"etc/", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt", "sidecar"}
	if !slices.Equal(names, want) {
		t.Errorf("layer holds %q, want %q", names, want)
	}
	bin := data["sidecar"]
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("/sidecar is not static: it has a %s program header", p.Type)
		}
	}

	// The binary says the version it was built with.
	exe := filepath.Join(t.TempDir(), "sidecar")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(exe, "--version").Output()
	if err != nil || string(out) != "1.2.3-test.1\n" {
		t.Errorf("sidecar --version: %q, %v; want \"1.2.3-test.1\\n\"", out, err)
	}
}

// TestRedisImage: the packed redis-server runs from the image's own files
// only (chrooted into its layer, as root can here) and answers PING.
func TestRedisImage(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed (.ci/deps installs it)")
	}
	img, _ := readOCI(t, build(t, "redis")[0].File)
	cf, _ := img.ConfigFile()
	if cf.Config.User != NonRoot || cf.Config.Entrypoint[0] != "/usr/bin/redis-server" {
		t.Errorf("user %q, entrypoint %q", cf.Config.User, cf.Config.Entrypoint)
	}
	if os.Getuid() != 0 {
		t.Skip("chroot needs root")
	}
	dir := t.TempDir()
	hdrs, data := layerFiles(t, img)
	for _, h := range hdrs {
		p := filepath.Join(dir, h.Name)
		if h.Typeflag == tar.TypeDir {
			os.MkdirAll(p, 0o755)
		} else if err := os.WriteFile(p, data[h.Name], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	var out bytes.Buffer
	cmd := exec.Command("/usr/bin/redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: dir, Credential: &syscall.Credential{Uid: 65532, Gid: 65532}, Pdeathsig: syscall.SIGKILL}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "PING\r\n")
			reply := make([]byte, 7)
			_, err = io.ReadFull(c, reply)
			c.Close()
			if err != nil || string(reply) != "+PONG\r\n" {
				t.Fatalf("PING: %q, %v", reply, err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server in the image's files does not answer: %v\n%s", err, out.String())
		}
	}
}

// TestPush pushes to go-containerregistry's registry, served in process,
// and pulls back what was built.
func TestPush(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	prefix := strings.TrimPrefix(srv.URL, "http://") + "/tandem"
	rs := []Recipe{must(Lookup("calculator-operator")), must(Lookup("pause"))}
	meta := Meta{Version: "0.9.0", Revision: "abc", Created: time.Unix(1e9, 0).UTC()}
	built, err := BuildAll(ctxT(t), Options{Root: repoRoot(t), Out: t.TempDir(), Meta: meta, Prefix: prefix, Push: true}, rs)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range built {
		if want := prefix + "/" + b.Name + ":0.9.0"; b.Ref != want {
			t.Errorf("ref %q, want %q", b.Ref, want)
		}
		ref, err := name.ParseReference(b.Ref)
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(ref)
		if err != nil {
			t.Fatalf("pulling %s: %v", b.Ref, err)
		}
		if d, _ := img.Digest(); d.String() != b.Digest {
			t.Errorf("%s: the registry has %s, built %s", b.Ref, d, b.Digest)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("%s: %v", b.Ref, err)
		}
	}
}

func TestPushRefusesBadName(t *testing.T) {
	built := build(t, "pause")[0]
	img, _ := readOCI(t, built.File)
	if err := Push(ctxT(t), img, "Not A Name"); err == nil || !strings.Contains(err.Error(), "Not A Name") {
		t.Errorf("err %v, want one naming the image", err)
	}
}

func TestRepoMeta(t *testing.T) {
	if _, err := RepoMeta(t.TempDir(), "dev"); err == nil || !strings.Contains(err.Error(), "semantic version") {
		t.Errorf("version dev: %v", err)
	}
	m, err := RepoMeta(t.TempDir(), "0.1.0")
	if err != nil || m.Revision != "unknown" || !m.Created.Equal(time.Unix(0, 0)) {
		t.Errorf("outside a checkout: %+v, %v", m, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	if m, _ := RepoMeta(t.TempDir(), "0.1.0"); !m.Created.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("SOURCE_DATE_EPOCH: created %s", m.Created)
	}
	v, err := ChartAppVersion(repoRoot(t))
	if err != nil || !IsSemver(v) {
		t.Errorf("chart appVersion %q, %v", v, err)
	}
}

func TestLayerRefusesDuplicatesAndFolders(t *testing.T) {
	src := filepath.Join(t.TempDir(), "f")
	os.WriteFile(src, []byte("x"), 0o644)
	for _, files := range [][]File{
		{{Path: "/a", Src: src}, {Path: "a", Src: src}},
		{{Path: "/dir/", Src: src}},
		{{Path: "/", Src: src}},
	} {
		if _, err := layer(files, time.Unix(0, 0)); err == nil {
			t.Errorf("%v: no error", files)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
