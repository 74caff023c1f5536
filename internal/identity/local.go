package identity

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DefaultRootTTL is the life of a root the local CA makes.
const DefaultRootTTL = 365 * 24 * time.Hour

// maxRootOverlap is the longest a next root is trusted before it signs.
const maxRootOverlap = time.Hour

// The files of the local CA's folder (the package doc says what each holds).
const (
	caCertFile   = "ca.crt"
	caKeyFile    = "ca.key"
	bundleFile   = "trust-bundle.pem"
	nextCertFile = "next.crt"
	nextKeyFile  = "next.key"
	lockFile     = ".lock"
)

// LocalCA is the standalone mode's certificate authority: a folder shared
// by every sidecar of the user (its layout and lifetimes are in the package
// doc). Its zero fields are the defaults.
type LocalCA struct {
	Dir string
	// RootTTL is the life of a root it makes; 0: DefaultRootTTL.
	RootTTL time.Duration
	// Now is its clock; nil: time.Now.
	Now func() time.Time
	// Logger hears of every root made, trusted, switched to or dropped.
	Logger *slog.Logger
}

// BundleFile is the folder's trust bundle: every root sidecars trust.
func (l LocalCA) BundleFile() string { return filepath.Join(l.Dir, bundleFile) }

// Load returns the CA that signs now. Under the folder's lock it first
// brings the folder up to date: it makes the CA when there is none, makes
// the next root when a third of the current root's life is left, lets it
// sign once it has been in the trust bundle for the overlap, drops expired
// roots from the bundle, and finishes what a crashed sidecar left half
// done. What it cannot tell from a CA in use, such as ca.crt without
// ca.key, it refuses, naming the file, and leaves as it is.
func (l LocalCA) Load() (*CA, error) {
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(l.Dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(l.Dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	defer lock.Close() // and the lock with it
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	now := time.Now()
	if l.Now != nil {
		now = l.Now()
	}
	ca, err := l.update(now)
	if err != nil {
		return nil, fmt.Errorf("the local CA in %s: %w", l.Dir, err)
	}
	return ca, nil
}

// Issuer issues certificates of id, valid for ttl (never past their root),
// from the CA that Load returns at each request. trustFile, when set, is
// the sidecar's own trust bundle in place of the folder's: a root that file
// does not hold signs nothing, since peers trusting the file would refuse
// what it signs.
func (l LocalCA) Issuer(id ID, ttl time.Duration, trustFile string) Issuer {
	return func(_ context.Context, csr []byte) ([][]byte, error) {
		ca, err := l.Load()
		if err != nil {
			return nil, err
		}
		if trustFile != "" {
			b, err := os.ReadFile(trustFile)
			if err != nil {
				return nil, fmt.Errorf("trust bundle: %w", err)
			}
			if !ca.InBundle(b) {
				return nil, fmt.Errorf("the local CA signs with the root %q, which the trust bundle %s does not hold: peers that trust that file would refuse the certificate; add the roots of %s to it",
					ca.Name(), trustFile, l.BundleFile())
			}
		}
		return ca.Sign(csr, id, ttl)
	}
}

// folder is what the CA's files hold; nil for a file that is not there.
type folder struct {
	crt, key, bundle, nextCrt, nextKey []byte
}

func (l LocalCA) read() (folder, error) {
	var f folder
	var errs []error
	for name, p := range map[string]*[]byte{caCertFile: &f.crt, caKeyFile: &f.key, bundleFile: &f.bundle, nextCertFile: &f.nextCrt, nextKeyFile: &f.nextKey} {
		b, err := os.ReadFile(filepath.Join(l.Dir, name))
		switch {
		case err == nil:
			*p = b
		case !errors.Is(err, os.ErrNotExist):
			errs = append(errs, err)
		}
	}
	return f, errors.Join(errs...)
}

// state is the folder as update works on it: the root that signs, the
// next root during a rotation (with its key's PEM), and the trust bundle.
type state struct {
	cur, next *CA
	nextKey   []byte
	roots     []*x509.Certificate
}

// update brings the folder up to date at now and returns the CA that signs.
func (l LocalCA) update(now time.Time) (*CA, error) {
	f, err := l.read()
	if err != nil {
		return nil, err
	}
	if f.crt == nil && f.bundle == nil && f.nextCrt == nil {
		return l.create(now, f)
	}
	if err := incomplete(f); err != nil {
		return nil, err
	}
	s, err := l.settle(f)
	if err != nil {
		return nil, err
	}
	for _, step := range []func(time.Time, *state) error{l.rotate, l.switchOver, l.dropExpired} {
		if err := step(now, &s); err != nil {
			return nil, err
		}
	}
	return s.cur, nil
}

// incomplete refuses a certificate without its key: it may be what running
// sidecars trust, so it is never replaced.
func incomplete(f folder) error {
	switch {
	case f.crt == nil:
		return fmt.Errorf("%s is missing, and %s is there: restore %s and %s, or remove the folder to make a new CA and restart every sidecar",
			caCertFile, present(f), caCertFile, caKeyFile)
	case f.key == nil:
		return fmt.Errorf("%s is there without its key: %s is missing; put the key of %s in %s (by hand, write %s first), or remove the folder to make a new CA and restart every sidecar",
			caCertFile, caKeyFile, caCertFile, caKeyFile, caKeyFile)
	case f.nextCrt != nil && f.nextKey == nil:
		return fmt.Errorf("%s is there without its key: %s is missing; restore it, or remove %s and its root from %s",
			nextCertFile, nextKeyFile, nextCertFile, bundleFile)
	}
	return nil
}

// settle parses the folder, finishes what a crashed sidecar left half
// done, and checks that the bundle holds the root that signs.
func (l LocalCA) settle(f folder) (state, error) {
	var s state
	var err error
	if f.nextCrt != nil {
		if s.next, err = ParseCA(f.nextCrt, f.nextKey); err != nil {
			return s, fmt.Errorf("%s and %s: %w", nextCertFile, nextKeyFile, err)
		}
		s.nextKey = f.nextKey
	}
	if s.cur, err = ParseCA(f.crt, f.key); err != nil {
		// A sidecar that crashed while the next root took over left the
		// next key in ca.key and the old root in ca.crt: finish.
		if s.next == nil || !bytes.Equal(f.key, f.nextKey) {
			return s, fmt.Errorf("%s and %s: %w (remove the folder to make a new CA, and restart every sidecar)", caCertFile, caKeyFile, err)
		}
		if err := l.write(caCertFile, s.next.certPEM); err != nil {
			return s, err
		}
		s.cur = s.next
	}
	if s.next != nil && bytes.Equal(s.next.cert.Raw, s.cur.cert.Raw) {
		s.next = nil // taken over; its files go below
	}
	if s.next == nil && (f.nextCrt != nil || f.nextKey != nil) {
		// Taken over, or a key alone: one whose certificate was never
		// written never signed.
		if err := l.removeNext(); err != nil {
			return s, err
		}
	}
	if s.roots, err = parseRoots(f.bundle); err != nil {
		return s, fmt.Errorf("%s: %w", bundleFile, err)
	}
	if f.bundle == nil { // a folder of an earlier release: ca.crt was the bundle
		s.roots = []*x509.Certificate{s.cur.cert}
		if err := l.writeBundle(s.roots); err != nil {
			return s, err
		}
	}
	if !holds(s.roots, s.cur.cert) {
		return s, fmt.Errorf("%s does not hold the root in %s (%q): sidecars would refuse the certificates it signs; add %s to %s",
			bundleFile, caCertFile, s.cur.Name(), caCertFile, bundleFile)
	}
	if s.next != nil && !holds(s.roots, s.next.cert) {
		// Made by a sidecar that crashed before the bundle was written:
		// never trusted, so never used. It is made again.
		if err := l.removeNext(); err != nil {
			return s, err
		}
		s.next = nil
	}
	return s, nil
}

// rotate makes the next root and adds it to the bundle once a third of the
// current root's life is left.
func (l LocalCA) rotate(now time.Time, s *state) error {
	if s.next != nil || now.Before(rotateAt(s.cur.cert)) {
		return nil
	}
	next, err := newCA("tandem local CA "+now.UTC().Format(time.RFC3339), now, l.rootTTL())
	if err != nil {
		return err
	}
	key, err := next.KeyPEM()
	if err != nil {
		return err
	}
	// The key first: a crash between the two leaves a key without a
	// certificate, which never signed and is made again.
	if err := l.write(nextKeyFile, key); err != nil {
		return err
	}
	if err := l.write(nextCertFile, next.certPEM); err != nil {
		return err
	}
	roots := append(s.roots[:len(s.roots):len(s.roots)], next.cert)
	if err := l.writeBundle(roots); err != nil {
		return err
	}
	s.next, s.nextKey, s.roots = next, key, roots
	l.log().Info("the local CA's next root is trusted from now on; it signs once every sidecar has read the trust bundle",
		"root", next.Name(), "signs_from", made(next.cert).Add(overlap(s.cur.cert)), "current_root", s.cur.Name(), "current_expires", s.cur.cert.NotAfter)
	return nil
}

// switchOver makes the next root the one that signs once it has been
// trusted for the overlap, or at once when the current root has expired.
func (l LocalCA) switchOver(now time.Time, s *state) error {
	if s.next == nil || (now.Before(made(s.next.cert).Add(overlap(s.cur.cert))) && now.Before(s.cur.cert.NotAfter)) {
		return nil
	}
	// The key first: a crash between the two is recognised by settle
	// (ca.key is next.key) and finished.
	if err := l.write(caKeyFile, s.nextKey); err != nil {
		return err
	}
	if err := l.write(caCertFile, s.next.certPEM); err != nil {
		return err
	}
	if err := l.removeNext(); err != nil {
		return err
	}
	l.log().Info("the local CA signs with its next root; the previous one stays trusted until it expires",
		"root", s.next.Name(), "previous_root", s.cur.Name(), "previous_expires", s.cur.cert.NotAfter)
	s.cur, s.next, s.nextKey = s.next, nil, nil
	return nil
}

// dropExpired takes expired roots out of the bundle: every certificate
// they signed has expired with them.
func (l LocalCA) dropExpired(now time.Time, s *state) error {
	kept := s.roots[:0:0]
	for _, r := range s.roots {
		if now.Before(r.NotAfter) {
			kept = append(kept, r)
			continue
		}
		l.log().Info("an expired root leaves the local CA's trust bundle", "root", r.Subject.CommonName, "expired", r.NotAfter)
	}
	if len(kept) == len(s.roots) {
		return nil
	}
	s.roots = kept
	return l.writeBundle(kept)
}

// create makes the CA in a folder that has none. A ca.key or next.key
// alone is what a crash left while a root was made: its certificate was
// never written, so it never signed, and it is replaced.
func (l LocalCA) create(now time.Time, f folder) (*CA, error) {
	if f.key != nil || f.nextKey != nil {
		l.log().Warn("a key without its certificate, left by a sidecar that stopped while it made the CA, is replaced")
	}
	if err := l.removeNext(); err != nil {
		return nil, err
	}
	ca, err := newCA("tandem local CA "+now.UTC().Format(time.RFC3339), now, l.rootTTL())
	if err != nil {
		return nil, err
	}
	key, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	if err := l.write(caKeyFile, key); err != nil {
		return nil, err
	}
	if err := l.write(caCertFile, ca.certPEM); err != nil {
		return nil, err
	}
	if err := l.writeBundle([]*x509.Certificate{ca.cert}); err != nil {
		return nil, err
	}
	l.log().Info("made the local CA", "dir", l.Dir, "root", ca.Name(), "expires", ca.cert.NotAfter)
	return ca, nil
}

// present names the CA's files that are there, for an error.
func present(f folder) string {
	var names []string
	for _, c := range []struct {
		name string
		b    []byte
	}{{caKeyFile, f.key}, {bundleFile, f.bundle}, {nextCertFile, f.nextCrt}, {nextKeyFile, f.nextKey}} {
		if c.b != nil {
			names = append(names, c.name)
		}
	}
	return strings.Join(names, ", ")
}

// made is when a root was made (its NotBefore is backdated).
func made(c *x509.Certificate) time.Time {
	if m := c.NotBefore.Add(rootBackdate); m.Before(c.NotAfter) {
		return m
	}
	return c.NotBefore
}

// rotateAt is when a third of the root's life is left.
func rotateAt(c *x509.Certificate) time.Time {
	m := made(c)
	return m.Add(c.NotAfter.Sub(m) * 2 / 3)
}

// overlap is how long a next root is trusted before it signs: long enough
// for every running sidecar to have read the trust bundle (they read it
// every second), an hour for roots of more than half a day.
func overlap(c *x509.Certificate) time.Duration {
	return min(maxRootOverlap, c.NotAfter.Sub(made(c))/12)
}

func holds(roots []*x509.Certificate, c *x509.Certificate) bool {
	for _, r := range roots {
		if r.Equal(c) {
			return true
		}
	}
	return false
}

// parseRoots reads a PEM bundle of CA certificates.
func parseRoots(b []byte) ([]*x509.Certificate, error) {
	var roots []*x509.Certificate
	for rest := bytes.TrimSpace(b); len(rest) > 0; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			return nil, errors.New("holds something other than PEM certificates")
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		if !c.IsCA {
			return nil, fmt.Errorf("the certificate %q is not a CA's", c.Subject.CommonName)
		}
		roots = append(roots, c)
		rest = bytes.TrimSpace(rest)
	}
	return roots, nil
}

func (l LocalCA) writeBundle(roots []*x509.Certificate) error {
	var b []byte
	for _, r := range roots {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Raw})...)
	}
	return l.write(bundleFile, b)
}

// removeNext removes next.crt, then next.key: a crash between the two
// leaves a key alone, which is removed again.
func (l LocalCA) removeNext() error {
	for _, name := range []string{nextCertFile, nextKeyFile} {
		if err := os.Remove(filepath.Join(l.Dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// write replaces the file name in the folder with b (mode 0600) by rename:
// a reader sees the old or the new content, never a mix.
func (l LocalCA) write(name string, b []byte) error {
	path := filepath.Join(l.Dir, name)
	tmp, err := os.CreateTemp(l.Dir, ".tmp-"+name+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a failure; gone after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func (l LocalCA) rootTTL() time.Duration {
	if l.RootTTL > 0 {
		return l.RootTTL
	}
	return DefaultRootTTL
}

func (l LocalCA) log() *slog.Logger {
	if l.Logger != nil {
		return l.Logger
	}
	return slog.New(slog.DiscardHandler)
}
