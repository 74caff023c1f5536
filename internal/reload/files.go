package reload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"time"

	"github.com/tandem-run/tandem/internal/yamldoc"
)

// doc is one version of one source: a file, or an object of the API
// server.
type doc struct {
	key     string // the file's path, or "<Kind> <namespace>/<name>"
	kind    string // an object's kind; "" for a file, which may hold several
	name    string // an object's name; "" for a file
	version string // "sha256:<hex>" of a file, or an object's resourceVersion
	body    []byte // YAML
}

// fileDoc reads the file at path.
func fileDoc(path string) (doc, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return doc{}, err
	}
	sum := sha256.Sum256(b)
	return doc{key: path, version: "sha256:" + hex.EncodeToString(sum[:]), body: b}, nil
}

// readDirs reads the YAML files of dirs (yamldoc.Files).
func readDirs(dirs []string) (map[string]doc, error) {
	out := map[string]doc{}
	for _, dir := range dirs {
		files, err := yamldoc.Files(dir)
		if err != nil {
			return nil, fmt.Errorf("--resources-path: %w", err)
		}
		for _, f := range files {
			d, err := fileDoc(f)
			if err != nil {
				return nil, err
			}
			out[f] = d
		}
	}
	return out, nil
}

// sameVersions reports whether a and b hold the same sources at the same
// versions.
func sameVersions(a, b map[string]doc) bool {
	return maps.EqualFunc(a, b, func(x, y doc) bool { return x.version == y.version })
}

// pollFiles reads the resource folders and the Configuration file every
// interval, and sends what they hold on out when it has changed since it
// was last sent and has read the same twice in a row: a file being
// written, or replaced by an editor's save (write a new file, rename it
// over the old), is taken once it has settled. sent and sentConf are the
// versions loaded at start. A folder or file that cannot be read is sent
// as the origin's error, once, and what is in force stays.
func pollFiles(ctx context.Context, dirs []string, configFile string, interval time.Duration, sent map[string]doc, sentConf doc, out chan<- update) {
	files := poller{origin: originFiles, sent: sent, read: func() (map[string]doc, error) { return readDirs(dirs) }}
	conf := poller{origin: originConfigFile, sent: map[string]doc{sentConf.key: sentConf}, read: func() (map[string]doc, error) {
		d, err := fileDoc(configFile)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		return map[string]doc{d.key: d}, nil
	}}
	var ps []*poller
	if len(dirs) > 0 {
		ps = append(ps, &files)
	}
	if configFile != "" {
		ps = append(ps, &conf)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range ps {
			if u, ok := p.poll(); ok && !send(ctx, out, u) {
				return
			}
		}
	}
}

// poller reads one origin of files.
type poller struct {
	origin  origin
	read    func() (map[string]doc, error)
	last    map[string]doc // read at the last tick; nil after an error
	sent    map[string]doc // nil after an error: sent again once readable
	lastErr string
}

// poll reads the origin, and returns the update to send, if any.
func (p *poller) poll() (update, bool) {
	docs, err := p.read()
	if err != nil {
		p.last, p.sent = nil, nil
		if err.Error() == p.lastErr {
			return update{}, false
		}
		p.lastErr = err.Error()
		return update{origin: p.origin, err: err}, true
	}
	p.lastErr = ""
	settled := p.last != nil && sameVersions(docs, p.last)
	p.last = docs
	if !settled || (p.sent != nil && sameVersions(docs, p.sent)) {
		return update{}, false
	}
	p.sent = docs
	return update{origin: p.origin, docs: docs}, true
}

func send(ctx context.Context, out chan<- update, u update) bool {
	select {
	case out <- u:
		return true
	case <-ctx.Done():
		return false
	}
}
