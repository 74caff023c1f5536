package reload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/tandem-run/tandem/internal/yamldoc"
)

// DefaultMaxFileSize is the most read of a resource file unless
// Sources.MaxFileSize says otherwise.
const DefaultMaxFileSize = 4 << 20

// doc is one version of one source: a file, or an object of the API
// server.
type doc struct {
	key     string // the file's path, or "<Kind> <namespace>/<name>"
	kind    string // an object's kind; "" for a file, which may hold several
	name    string // an object's name; "" for a file
	version string // "sha256:<hex>" of a file, or an object's resourceVersion
	body    []byte // YAML
}

// fileDoc reads the file at path: a regular file (or a link to one) of at
// most limit bytes (yamldoc.ReadFile).
func fileDoc(path string, limit int64) (doc, error) {
	b, err := yamldoc.ReadFile(path, limit)
	if errors.Is(err, yamldoc.ErrTooLarge) {
		err = fmt.Errorf("%w, the most read of a resource file (--resources-max-file-size)", err)
	}
	if err != nil {
		return doc{}, err
	}
	sum := sha256.Sum256(b)
	return doc{key: path, version: "sha256:" + hex.EncodeToString(sum[:]), body: b}, nil
}

// fileRead is what reading a file gave: a version, or why it could not
// be read.
type fileRead struct {
	doc doc
	err error
}

// same reports whether a and b read the same: one version, or one error.
func (a fileRead) same(b fileRead) bool {
	if a.err != nil || b.err != nil {
		return a.err != nil && b.err != nil && a.err.Error() == b.err.Error()
	}
	return a.doc.version == b.doc.version
}

// readDirs reads the YAML files of dirs (yamldoc.Files), each on its own:
// a file that cannot be read is there with its error. The error returned
// is a folder that cannot be listed.
func readDirs(dirs []string, limit int64) (map[string]fileRead, error) {
	out := map[string]fileRead{}
	for _, dir := range dirs {
		files, err := yamldoc.Files(dir)
		if err != nil {
			return nil, fmt.Errorf("--resources-path: %w", err)
		}
		for _, f := range files {
			d, err := fileDoc(f, limit)
			out[f] = fileRead{doc: d, err: err}
		}
	}
	return out, nil
}

// pollFiles reads the resource folders and the Configuration file every
// interval, and sends what they hold on out. Each file is taken once it
// has read the same twice in a row, on its own: a file being written, or
// replaced by an editor's save (write a new file, rename it over the
// old), is taken once it has settled, and a file that never settles (a
// log, a generator) holds back no other. A file is removed once it has
// been absent twice. sent and sentConf are the versions loaded at start.
// A file that cannot be read (not a regular file, too large) is sent as
// its own error; a folder, or the Configuration file, that cannot be read
// is sent as the origin's error, once; what is in force stays. src gives
// the folders (Dirs), the file (ConfigFile), the bound (MaxFileSize) and
// the interval (Poll).
func pollFiles(ctx context.Context, src Sources, sent map[string]doc, sentConf doc, out chan<- update) {
	files := poller{origin: originFiles, sent: map[string]fileRead{}, read: func() (map[string]fileRead, error) { return readDirs(src.Dirs, src.MaxFileSize) }}
	for key, d := range sent {
		files.sent[key] = fileRead{doc: d}
	}
	conf := poller{origin: originConfigFile, sent: map[string]fileRead{sentConf.key: {doc: sentConf}}, read: func() (map[string]fileRead, error) {
		d, err := fileDoc(src.ConfigFile, src.MaxFileSize)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		return map[string]fileRead{d.key: {doc: d}}, nil
	}}
	var ps []*poller
	if len(src.Dirs) > 0 {
		ps = append(ps, &files)
	}
	if src.ConfigFile != "" {
		ps = append(ps, &conf)
	}
	t := time.NewTicker(src.Poll)
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

// poller reads one origin of files, and keeps what each file read at the
// last tick and what was last sent of it.
type poller struct {
	origin  origin
	read    func() (map[string]fileRead, error)
	last    map[string]fileRead // read at the last tick; nil: none, or an error
	sent    map[string]fileRead // a file's settled read, as last sent
	lastErr string              // the origin's error last sent; "": none
}

// poll reads the origin, and returns the update to send, if any: every
// file as last sent, with the changes that have settled since.
func (p *poller) poll() (update, bool) {
	now, err := p.read()
	if err != nil {
		p.last = nil
		if err.Error() == p.lastErr {
			return update{}, false
		}
		p.lastErr = err.Error()
		return update{origin: p.origin, err: err}, true
	}
	changed := p.lastErr != "" // sent to clear the origin's error
	p.lastErr = ""
	next := make(map[string]fileRead, len(p.sent))
	maps.Copy(next, p.sent)
	for key := range joined(now, p.sent) {
		cur, there := now[key]
		if !p.settled(key, cur, there) {
			continue
		}
		if s, was := p.sent[key]; there == was && (!there || cur.same(s)) {
			continue
		}
		changed = true
		if there {
			next[key] = cur
		} else {
			delete(next, key)
		}
	}
	p.last = now
	if !changed {
		return update{}, false
	}
	p.sent = next
	u := update{origin: p.origin, docs: map[string]doc{}}
	for key, f := range next {
		if f.err != nil {
			if u.errs == nil {
				u.errs = map[string]error{}
			}
			u.errs[key] = f.err
		} else {
			u.docs[key] = f.doc
		}
	}
	return u, true
}

// settled reports whether the file key reads now (cur; there: it is
// listed) as it did at the last tick: the same version or error, or
// absent both times.
func (p *poller) settled(key string, cur fileRead, there bool) bool {
	if p.last == nil {
		return false
	}
	prev, was := p.last[key]
	return there == was && (!there || cur.same(prev))
}

// joined is the keys of a and b.
func joined(a, b map[string]fileRead) map[string]bool {
	out := make(map[string]bool, len(a)+len(b))
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func send(ctx context.Context, out chan<- update, u update) bool {
	select {
	case out <- u:
		return true
	case <-ctx.Done():
		return false
	}
}
