package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// localAt is the local CA in dir with roots of life ttl, on a clock stopped
// at now.
func localAt(dir string, ttl time.Duration, now time.Time) LocalCA {
	return LocalCA{Dir: dir, RootTTL: ttl, Now: func() time.Time { return now }}
}

// bundleNames are the common names of the roots in the folder's bundle.
func bundleNames(t *testing.T, l LocalCA) []string {
	t.Helper()
	b, err := os.ReadFile(l.BundleFile())
	if err != nil {
		t.Fatal(err)
	}
	roots, err := parseRoots(b)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range roots {
		names = append(names, r.Subject.CommonName)
	}
	return names
}

func exists(dir, name string) bool {
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}

// leafOf signs a certificate of id with ca.
func leafOf(t *testing.T, ca *CA, id ID, ttl time.Duration) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	chain, err := ca.Sign(csr, id, ttl)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(chain[0])
	return leaf
}

// A root's life, on a clock the test moves: the next root is made and
// trusted when a third of the current one's life is left, while the current
// one still signs and is valid; the next one signs after the overlap; the
// old one stays trusted until it expires, then leaves the bundle. Sidecars
// reading the bundle file trust both roots meanwhile.
func TestLocalCARotation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	const life = 3 * time.Hour // the overlap is a twelfth: 15 minutes
	// Roots made in the past, so that the real clock, which TLS and Sign
	// use, finds both valid during the overlap.
	t0 := time.Now().Add(-150 * time.Minute)
	load := func(at time.Duration) *CA {
		t.Helper()
		ca, err := localAt(dir, life, t0.Add(at)).Load()
		if err != nil {
			t.Fatalf("at %v: %v", at, err)
		}
		return ca
	}
	l := localAt(dir, life, t0)
	first := load(0)
	if got := bundleNames(t, l); !slices.Equal(got, []string{first.Name()}) {
		t.Fatalf("bundle of a new CA: %q, want its root", got)
	}
	if ca := load(119 * time.Minute); ca.Name() != first.Name() || len(bundleNames(t, l)) != 1 || exists(dir, nextCertFile) {
		t.Fatal("a next root before two thirds of the root's life")
	}

	// Two thirds in: the next root is trusted; the current one signs on.
	ca := load(121 * time.Minute)
	if ca.Name() != first.Name() {
		t.Fatalf("signing with %q at the rotation, want the current root %q until the overlap has passed", ca.Name(), first.Name())
	}
	names := bundleNames(t, l)
	if len(names) != 2 || names[0] != first.Name() || !exists(dir, nextCertFile) {
		t.Fatalf("bundle after the rotation: %q, want the current root and the next", names)
	}
	second := names[1]
	if !time.Now().Before(first.cert.NotAfter) {
		t.Fatal("the old root expired during its overlap")
	}
	if ca := load(135 * time.Minute); ca.Name() != first.Name() {
		t.Fatalf("signing with %q within the overlap", ca.Name())
	}

	// A sidecar that trusts the bundle file, with a certificate of the old
	// root, and one of the next root made meanwhile call each other.
	front := ID{TrustDomain: "public", Namespace: "default", AppID: "front"}
	orders := ID{TrustDomain: "public", Namespace: "default", AppID: "orders"}
	old := newSource(t, first, orders, BundleSource{File: l.BundleFile()})

	// After the overlap the next root signs; the old one stays trusted.
	ca = load(137 * time.Minute)
	if ca.Name() != second {
		t.Fatalf("signing with %q after the overlap, want the next root %q", ca.Name(), second)
	}
	if exists(dir, nextCertFile) || exists(dir, nextKeyFile) {
		t.Error("next.crt or next.key left after the next root took over")
	}
	if got := bundleNames(t, l); !slices.Equal(got, []string{first.Name(), second}) {
		t.Fatalf("bundle after the switch: %q, want both roots", got)
	}
	if again := load(137 * time.Minute); again.Name() != second {
		t.Fatalf("read back: %q", again.Name())
	}
	newer := newSource(t, ca, front, BundleSource{File: l.BundleFile()})
	if cerr, serr := handshake(t, newer.ClientTLS(orders), old.ServerTLS()); cerr != nil || serr != nil {
		t.Errorf("new root -> old root: %v / %v", cerr, serr)
	}
	if cerr, serr := handshake(t, old.ClientTLS(front), newer.ServerTLS()); cerr != nil || serr != nil {
		t.Errorf("old root -> new root: %v / %v", cerr, serr)
	}
	// A certificate never outlives its root.
	if leaf := leafOf(t, first, orders, 24*time.Hour); !leaf.NotAfter.Equal(first.cert.NotAfter) {
		t.Errorf("a day-long certificate of a root with %v left expires %v", time.Until(first.cert.NotAfter), leaf.NotAfter)
	}

	// The old root expires and leaves the bundle.
	if ca := load(life + time.Second); ca.Name() != second {
		t.Fatalf("signing with %q after the old root expired", ca.Name())
	}
	if got := bundleNames(t, l); !slices.Equal(got, []string{second}) {
		t.Fatalf("bundle after the old root expired: %q, want the new root alone", got)
	}
}

// A root that expired while no sidecar ran is replaced at once, and leaves
// the bundle: nothing it signed is valid any more.
func TestLocalCAExpiredUnused(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now()
	first, err := localAt(dir, time.Hour, t0).Load()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := localAt(dir, time.Hour, t0.Add(2*time.Hour)).Load()
	if err != nil {
		t.Fatal(err)
	}
	if ca.Name() == first.Name() {
		t.Fatal("the expired root signs on")
	}
	if got := bundleNames(t, localAt(dir, 0, t0)); !slices.Equal(got, []string{ca.Name()}) {
		t.Fatalf("bundle: %q, want the new root alone", got)
	}
}

// Sign refuses with an expired root.
func TestSignExpiredRoot(t *testing.T) {
	ca, err := NewCA("gone", -time.Second)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if _, err := ca.Sign(csr, ID{"public", "default", "a"}, time.Hour); err == nil || !strings.Contains(err.Error(), `root "gone" expired`) {
		t.Errorf("signing with an expired root: %v", err)
	}
}

// Sidecars starting together make one CA, and at the rotation point one
// next root; the folder is readable by its user only.
func TestLocalCAConcurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	t0 := time.Now().Add(-50 * time.Minute)
	all := func(at time.Time) []string {
		var wg sync.WaitGroup
		roots := make([]string, 8)
		for i := range roots {
			wg.Go(func() {
				ca, err := localAt(dir, time.Hour, at).Load()
				if err != nil {
					t.Error(err)
					return
				}
				roots[i] = ca.Name()
			})
		}
		wg.Wait()
		return roots
	}
	roots := all(t0)
	for _, r := range roots[1:] {
		if r != roots[0] {
			t.Fatalf("sidecars starting together made more than one CA: %q", roots)
		}
	}
	l := localAt(dir, time.Hour, t0)
	if got := bundleNames(t, l); !slices.Equal(got, roots[:1]) {
		t.Fatalf("bundle %q, want the one root", got)
	}
	all(t0.Add(41 * time.Minute))
	if got := bundleNames(t, l); len(got) != 2 {
		t.Fatalf("sidecars at the rotation point together: bundle %q, want the root and one next root", got)
	}
	for _, name := range []string{"", caKeyFile, caCertFile, bundleFile, nextCertFile, nextKeyFile} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v: others can read it", filepath.Join(dir, name), st.Mode().Perm())
		}
	}
}

// snapshot is every file of dir and its content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

// A folder that may hold what running sidecars trust, but that cannot sign
// as it is, is refused naming the file, and left as it is: never replaced
// by a new CA.
func TestLocalCARefuses(t *testing.T) {
	t0 := time.Now().Add(-50 * time.Minute)
	other, _ := NewCA("someone else's root", time.Hour)
	otherKey, _ := other.KeyPEM()
	cases := []struct {
		name  string
		at    time.Duration // after the CA was made
		spoil func(t *testing.T, dir string)
		says  []string
	}{
		{"ca.crt without ca.key", 0, func(t *testing.T, dir string) {
			rm(t, dir, caKeyFile)
		}, []string{"ca.key is missing", "ca.crt is there without its key"}},
		{"ca.crt without ca.key during a rotation", 45 * time.Minute, func(t *testing.T, dir string) {
			makeLocal(t, dir, t0.Add(41*time.Minute))
			rm(t, dir, caKeyFile)
		}, []string{"ca.key is missing"}},
		{"next.crt without next.key", 45 * time.Minute, func(t *testing.T, dir string) {
			makeLocal(t, dir, t0.Add(41*time.Minute))
			rm(t, dir, nextKeyFile)
		}, []string{"next.key is missing"}},
		{"ca.key and the bundle without ca.crt", 0, func(t *testing.T, dir string) {
			rm(t, dir, caCertFile)
		}, []string{"ca.crt is missing", "ca.key, trust-bundle.pem"}},
		{"the bundle alone", 0, func(t *testing.T, dir string) {
			rm(t, dir, caCertFile)
			rm(t, dir, caKeyFile)
		}, []string{"ca.crt is missing", "trust-bundle.pem"}},
		{"ca.crt outside the bundle", 0, func(t *testing.T, dir string) {
			put(t, dir, caKeyFile, otherKey)
			put(t, dir, caCertFile, other.CertPEM())
		}, []string{"trust-bundle.pem does not hold the root in ca.crt", "someone else's root"}},
		{"ca.key not ca.crt's", 0, func(t *testing.T, dir string) {
			put(t, dir, caKeyFile, otherKey)
		}, []string{"ca.crt and ca.key", "not the certificate's"}},
		{"a broken bundle", 0, func(t *testing.T, dir string) {
			put(t, dir, bundleFile, []byte("not PEM"))
		}, []string{"trust-bundle.pem", "PEM"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := localAt(dir, time.Hour, t0).Load(); err != nil {
				t.Fatal(err)
			}
			c.spoil(t, dir)
			before := snapshot(t, dir)
			_, err := localAt(dir, time.Hour, t0.Add(c.at)).Load()
			if err == nil {
				t.Fatal("loaded")
			}
			for _, s := range append(c.says, dir) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if after := snapshot(t, dir); !maps.Equal(before, after) {
				t.Errorf("the folder changed: %v -> %v", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
			}
		})
	}
}

// What a crashed sidecar left half done is finished by the next one.
func TestLocalCACrashes(t *testing.T) {
	t0 := time.Now().Add(-50 * time.Minute)
	rotating := t0.Add(41 * time.Minute) // a next root, within its overlap
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string)
		at    time.Time
		check func(t *testing.T, dir string, ca *CA)
	}{
		{"a key alone, made before its certificate", func(t *testing.T, dir string) {
			key, _ := mustCA(t).KeyPEM()
			put(t, dir, caKeyFile, key)
		}, t0, func(t *testing.T, dir string, ca *CA) {
			if got := bundleNames(t, localAt(dir, 0, t0)); !slices.Equal(got, []string{ca.Name()}) {
				t.Errorf("bundle %q, want the new root", got)
			}
		}},
		{"a folder of an earlier release, without a bundle", func(t *testing.T, dir string) {
			makeLocal(t, dir, t0)
			rm(t, dir, bundleFile)
		}, t0, func(t *testing.T, dir string, ca *CA) {
			if got := bundleNames(t, localAt(dir, 0, t0)); !slices.Equal(got, []string{ca.Name()}) {
				t.Errorf("bundle %q, want ca.crt", got)
			}
		}},
		{"a next root never trusted", func(t *testing.T, dir string) {
			makeLocal(t, dir, t0)
			next, _ := newCA("never trusted", t0.Add(40*time.Minute), time.Hour)
			key, _ := next.KeyPEM()
			put(t, dir, nextKeyFile, key)
			put(t, dir, nextCertFile, next.CertPEM())
		}, rotating, func(t *testing.T, dir string, ca *CA) {
			got := bundleNames(t, localAt(dir, 0, t0))
			if len(got) != 2 || got[1] == "never trusted" {
				t.Errorf("bundle %q, want the root and a next root made again", got)
			}
		}},
		{"next.key alone", func(t *testing.T, dir string) {
			makeLocal(t, dir, t0)
			key, _ := mustCA(t).KeyPEM()
			put(t, dir, nextKeyFile, key)
		}, t0, func(t *testing.T, dir string, ca *CA) {
			if exists(dir, nextKeyFile) {
				t.Error("next.key alone is still there")
			}
		}},
		{"the next root half taken over: its key in ca.key", func(t *testing.T, dir string) {
			makeLocal(t, dir, t0)
			if _, err := localAt(dir, time.Hour, rotating).Load(); err != nil {
				t.Fatal(err)
			}
			key, _ := os.ReadFile(filepath.Join(dir, nextKeyFile))
			put(t, dir, caKeyFile, key)
		}, rotating, func(t *testing.T, dir string, ca *CA) {
			if got := bundleNames(t, localAt(dir, 0, t0)); len(got) != 2 || ca.Name() != got[1] {
				t.Errorf("signing with %q, bundle %q: want the next root", ca.Name(), got)
			}
			if exists(dir, nextCertFile) || exists(dir, nextKeyFile) {
				t.Error("next.crt or next.key left")
			}
		}},
		{"the next root taken over, its files left", func(t *testing.T, dir string) {
			makeLocal(t, dir, t0)
			if _, err := localAt(dir, time.Hour, rotating).Load(); err != nil {
				t.Fatal(err)
			}
			for _, f := range [][2]string{{nextKeyFile, caKeyFile}, {nextCertFile, caCertFile}} {
				b, _ := os.ReadFile(filepath.Join(dir, f[0]))
				put(t, dir, f[1], b)
			}
		}, rotating, func(t *testing.T, dir string, ca *CA) {
			if got := bundleNames(t, localAt(dir, 0, t0)); len(got) != 2 || ca.Name() != got[1] {
				t.Errorf("signing with %q, bundle %q: want the next root", ca.Name(), got)
			}
			if exists(dir, nextCertFile) || exists(dir, nextKeyFile) {
				t.Error("next.crt or next.key left")
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.setup(t, dir)
			ca, err := localAt(dir, time.Hour, c.at).Load()
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, dir, ca)
			if again, err := localAt(dir, time.Hour, c.at).Load(); err != nil || again.Name() != ca.Name() {
				t.Errorf("read back: %v %v, want %q", again, err, ca.Name())
			}
		})
	}
}

// With a trust bundle of its own, a sidecar gets no certificate of a root
// that bundle does not hold, and is told which file to add it to.
func TestLocalCAIssuerOwnBundle(t *testing.T) {
	dir := t.TempDir()
	l := localAt(dir, time.Hour, time.Now())
	ca, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(t.TempDir(), "roots.pem")
	other, _ := NewCA("another root", time.Hour)
	put(t, filepath.Dir(own), filepath.Base(own), other.CertPEM())
	id := ID{"public", "default", "a"}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	_, err = l.Issuer(id, time.Hour, own)(context.Background(), csr)
	if err == nil || !strings.Contains(err.Error(), own) || !strings.Contains(err.Error(), ca.Name()) || !strings.Contains(err.Error(), l.BundleFile()) {
		t.Errorf("a root outside the sidecar's own bundle: %v", err)
	}
	put(t, filepath.Dir(own), filepath.Base(own), append(other.CertPEM(), ca.CertPEM()...))
	if _, err := l.Issuer(id, time.Hour, own)(context.Background(), csr); err != nil {
		t.Errorf("a root in the sidecar's own bundle: %v", err)
	}
}

func mustCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("a root", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// makeLocal makes the local CA in dir at t0, with roots of an hour.
func makeLocal(t *testing.T, dir string, t0 time.Time) {
	t.Helper()
	if _, err := localAt(dir, time.Hour, t0).Load(); err != nil {
		t.Fatal(err)
	}
}

func rm(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func put(t *testing.T, dir, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}
