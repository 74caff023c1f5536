// Package yamldoc reads Dapr resources from YAML: the documents of one kind
// in a multi-document stream, decoded strictly (a field the target does not
// have is an error, so a typo never silently becomes a default), the YAML
// files of a resources folder, and one such file, read only when it is a
// regular file and only up to a bound.
package yamldoc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"
)

// Each calls fn with every document of b whose kind is kind, numbered from
// 1 among all of b's documents. source names b in errors. A stream that is
// not YAML, or a document without a readable kind, is an error.
func Each(b []byte, source, kind string, fn func(doc int, node *yaml.Node) error) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for doc := 1; ; doc++ {
		var node yaml.Node
		if err := dec.Decode(&node); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("%s: not valid YAML: %w", source, err)
		}
		var head struct {
			Kind string `yaml:"kind"`
		}
		if err := node.Decode(&head); err != nil {
			return fmt.Errorf("%s: document %d: %w", source, doc, err)
		}
		if head.Kind != kind {
			continue
		}
		if err := fn(doc, &node); err != nil {
			return err
		}
	}
}

// Strict decodes node into v, refusing fields v does not have.
func Strict(node *yaml.Node, v any) error {
	b, err := yaml.Marshal(node)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// Files lists the *.yaml and *.yml files of dir, in name order. Hidden
// files are left out: editors' swap and lock files (Emacs's .#x.yaml, a
// link to nowhere) and a ConfigMap volume's ..data are not resources.
func Files(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() && !strings.HasPrefix(n, ".") && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out, nil
}

// ErrNotRegular is returned by ReadFile for a path that is not a regular
// file nor a link to one: a named pipe, a device, a socket, a folder.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is returned by ReadFile for a file that holds more than the
// bound it was given.
var ErrTooLarge = errors.New("file too large")

// ReadFile reads the file at path, a regular file or a link to one, of at
// most limit bytes. It never blocks on what is not a file: it is opened
// without waiting (a named pipe opens at once), and refused unless what
// was opened is a regular file. At most limit+1 bytes are read, so a file
// that grows past limit while it is read is refused too. Errors name path
// and wrap ErrNotRegular or ErrTooLarge.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w but %s; only regular files, or links to them, are read", path, ErrNotRegular, typeOf(fi.Mode()))
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: more than %s", path, ErrTooLarge, size(limit))
	}
	return b, nil
}

// typeOf names the type of what is not a regular file.
func typeOf(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a folder"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "of type " + m.Type().String()
}

// size writes n bytes as the size flags take it: 1Gi, 4Mi, 64Ki, or in
// bytes.
func size(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGi", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMi", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKi", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
