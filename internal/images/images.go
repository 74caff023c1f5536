// Package images packs programs as OCI images without a container engine:
// one layer of files on an empty base, written as an OCI image layout
// tarball (what `ctr images import`, `docker load`, `kind load
// image-archive` and `podman load` read) or pushed to a registry.
//
// Images are reproducible: a layer's entries are sorted, owned by root with
// fixed modes and a fixed modification time, and the image's creation time
// is the one given (the commit's time), so the same files give the same
// digests on every build. The programs of this repository and what each
// image holds are in recipes.go.
package images

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRoot is the user and group every image of ours runs as unless its pod
// says otherwise (distroless's "nonroot").
const NonRoot = "65532:65532"

// Spec is one image: its files (a single layer on an empty base) and how it
// runs.
type Spec struct {
	Files      []File
	Entrypoint []string
	Env        []string
	User       string   // e.g. NonRoot; empty: root
	Ports      []string // exposed ports, e.g. "3500/tcp"
	Labels     map[string]string
	Created    time.Time // the image's creation time (also its layer's mtimes)
	OS, Arch   string
}

// File is a file of an image: the contents of Src on this machine at Path in
// the image, with Mode (0o755 for programs and libraries, 0o644 for data).
type File struct {
	Path string
	Src  string
	Mode int64
}

// Build makes the image of s.
func Build(s Spec) (v1.Image, error) {
	layerTar, err := layer(s.Files, s.Created)
	if err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     l,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: s.Created}, CreatedBy: "tandem images"},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: s.Created}
	cf.OS, cf.Architecture = s.OS, s.Arch
	cf.Config.Entrypoint = s.Entrypoint
	cf.Config.Env = s.Env
	cf.Config.User = s.User
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = s.Labels
	if len(s.Ports) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range s.Ports {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	return mutate.ConfigFile(img, cf)
}

// layer is the uncompressed tar of files, with their parent directories:
// sorted, owned by root, modified at mtime.
func layer(files []File, mtime time.Time) ([]byte, error) {
	dirs := map[string]bool{}
	byPath := map[string]File{}
	for _, f := range files {
		p := path.Clean("/" + f.Path)
		if p == "/" || strings.HasSuffix(f.Path, "/") {
			return nil, fmt.Errorf("image file %q: not a file path", f.Path)
		}
		if _, dup := byPath[p]; dup {
			return nil, fmt.Errorf("image file %s given twice", p)
		}
		byPath[p] = f
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var names []string
	for d := range dirs {
		names = append(names, d)
	}
	for p := range byPath {
		names = append(names, p)
	}
	slices.Sort(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range names {
		hdr := &tar.Header{Name: strings.TrimPrefix(name, "/"), ModTime: mtime.Truncate(time.Second)}
		f, isFile := byPath[name]
		var data []byte
		if isFile {
			var err error
			if data, err = os.ReadFile(f.Src); err != nil {
				return nil, fmt.Errorf("image file %s: %w", name, err)
			}
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, f.Mode, int64(len(data))
			if hdr.Mode == 0 {
				hdr.Mode = 0o644
			}
		} else {
			hdr.Name += "/"
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
