// Package yamldoc reads Dapr resources from YAML: the documents of one kind
// in a multi-document stream, decoded strictly (a field the target does not
// have is an error, so a typo never silently becomes a default), and the
// YAML files of a resources folder.
package yamldoc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

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
