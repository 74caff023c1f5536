package images

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Options says where a build's images go.
type Options struct {
	Root string // the repository
	Out  string // folder of the OCI tarballs <name>.tar and images.txt
	Meta Meta
	// Prefix names the images <Prefix>/<name>:<version>: "tandem", or a
	// registry and repository prefix such as localhost:5000/tandem.
	Prefix string
	Push   bool // push each image to its name's registry too
}

// Built is one image built.
type Built struct {
	Name   string // the recipe's
	Ref    string // <prefix>/<name>:<version>
	Digest string // the manifest's, sha256:...
	File   string // its OCI tarball
}

// BuildAll builds recipes into o.Out, pushes them when o.Push, and writes
// o.Out/images.txt: "<ref> <digest>" a line.
func BuildAll(ctx context.Context, o Options, recipes []Recipe) ([]Built, error) {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "tandem-images-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	b := &Builder{Root: o.Root, Work: work, Meta: o.Meta}
	var built []Built
	var list strings.Builder
	for _, r := range recipes {
		img, err := b.Build(ctx, r)
		if err != nil {
			return built, err
		}
		ref := strings.TrimSuffix(o.Prefix, "/") + "/" + r.Name + ":" + o.Meta.Version
		file := filepath.Join(o.Out, r.Name+".tar")
		if err := writeFile(file, func(f *os.File) error { return WriteOCI(f, img, ref) }); err != nil {
			return built, fmt.Errorf("image %s: %w", r.Name, err)
		}
		if o.Push {
			if err := Push(ctx, img, ref); err != nil {
				return built, err
			}
		}
		d, err := img.Digest()
		if err != nil {
			return built, err
		}
		built = append(built, Built{Name: r.Name, Ref: ref, Digest: d.String(), File: file})
		fmt.Fprintf(&list, "%s %s\n", ref, d)
	}
	err = writeFile(filepath.Join(o.Out, "images.txt"), func(f *os.File) error {
		_, err := f.WriteString(list.String())
		return err
	})
	return built, err
}

// writeFile writes path through a temporary file renamed into place, so a
// failed build leaves no half-written tarball.
func writeFile(path string, write func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
