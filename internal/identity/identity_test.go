package identity

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func newSource(t *testing.T, ca *CA, id ID, bundle BundleSource) *Source {
	t.Helper()
	if bundle.File == "" && bundle.PEM == nil {
		bundle.PEM = ca.CertPEM()
	}
	s, err := NewSource(context.Background(), SourceConfig{ID: id, TTL: time.Hour, Bundle: bundle,
		Issue: func(_ context.Context, csr []byte) ([][]byte, error) { return ca.Sign(csr, id, time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// handshake runs a TLS handshake between a client and a server config over
// loopback and returns each side's error.
func handshake(t *testing.T, client, server *tls.Config) (cerr, serr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			serr = err
			return
		}
		defer c.Close()
		serr = tls.Server(c, server).Handshake()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, client)
	cerr = tc.Handshake()
	if cerr == nil {
		// In TLS 1.3 the server checks the client's certificate after the
		// client is done: read to learn its verdict.
		_ = tc.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, rerr := tc.Read(make([]byte, 1))
		if rerr != nil && !strings.Contains(rerr.Error(), "timeout") && !strings.Contains(rerr.Error(), "EOF") {
			cerr = rerr
		}
	}
	tc.Close()
	wg.Wait()
	return cerr, serr
}

func TestMutualTLS(t *testing.T) {
	ca, err := NewCA("root-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewCA("root-b", time.Hour)
	front := ID{TrustDomain: "public", Namespace: "default", AppID: "front"}
	orders := ID{TrustDomain: "public", Namespace: "default", AppID: "orders"}
	fs, os1 := newSource(t, ca, front, BundleSource{}), newSource(t, ca, orders, BundleSource{})
	// A stranger's certificate is of another CA; it trusts both roots.
	stranger := newSource(t, other, front, BundleSource{PEM: append(ca.CertPEM(), other.CertPEM()...)})

	if cerr, serr := handshake(t, fs.ClientTLS(orders), os1.ServerTLS()); cerr != nil || serr != nil {
		t.Fatalf("front -> orders: %v / %v", cerr, serr)
	}
	// The server is not the app the client meant.
	if cerr, _ := handshake(t, fs.ClientTLS(ID{TrustDomain: "public", Namespace: "default", AppID: "payments"}), os1.ServerTLS()); cerr == nil ||
		!strings.Contains(cerr.Error(), "not spiffe://public/ns/default/payments") {
		t.Errorf("a server posing as another app: %v", cerr)
	}
	// A certificate of another CA is refused on both sides.
	if _, serr := handshake(t, stranger.ClientTLS(orders), os1.ServerTLS()); serr == nil || !strings.Contains(serr.Error(), "trust bundle") {
		t.Errorf("a client of another CA: %v", serr)
	}
	if cerr, _ := handshake(t, fs.ClientTLS(front), stranger.ServerTLS()); cerr == nil {
		t.Error("a server of another CA was accepted")
	}
	// No client certificate: refused.
	if _, serr := handshake(t, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}, os1.ServerTLS()); serr == nil { //nolint:gosec // the test's anonymous client
		t.Error("a client without a certificate was accepted")
	}
	// TLS 1.2 is refused.
	c12 := fs.ClientTLS(orders)
	c12.MinVersion, c12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if cerr, _ := handshake(t, c12, os1.ServerTLS()); cerr == nil {
		t.Error("TLS 1.2 was accepted")
	}
}

// A bundle file with two roots trusts both; rewritten with one, the other
// is refused; a broken file keeps the previous bundle.
func TestBundleReload(t *testing.T) {
	a, _ := NewCA("root-a", time.Hour)
	b, _ := NewCA("root-b", time.Hour)
	file := filepath.Join(t.TempDir(), "bundle.pem")
	write := func(pems ...[]byte) {
		t.Helper()
		tmp := file + ".new"
		if err := os.WriteFile(tmp, []byte(strings.Join(func() []string {
			var s []string
			for _, p := range pems {
				s = append(s, string(p))
			}
			return s
		}(), "")), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil { // as editors save
			t.Fatal(err)
		}
	}
	write(a.CertPEM(), b.CertPEM())
	orders := ID{TrustDomain: "public", Namespace: "default", AppID: "orders"}
	front := ID{TrustDomain: "public", Namespace: "default", AppID: "front"}
	server := newSource(t, a, orders, BundleSource{File: file})
	fromB := newSource(t, b, front, BundleSource{PEM: append(a.CertPEM(), b.CertPEM()...)})
	if _, serr := handshake(t, fromB.ClientTLS(orders), server.ServerTLS()); serr != nil {
		t.Fatalf("root b while both are trusted: %v", serr)
	}
	if got := gaugeLabels(t, server.anchors); got != "root-a root-b" {
		t.Errorf("tandem_mtls_trust_anchors with both roots: %q", got)
	}
	if got := gaugeLabels(t, fromB.issuer); got != "root-b" {
		t.Errorf("tandem_mtls_certificate_info of a certificate of root b: %q", got)
	}
	write(a.CertPEM())
	if err := server.loadBundle(); err != nil {
		t.Fatal(err)
	}
	if got := gaugeLabels(t, server.anchors); got != "root-a" {
		t.Errorf("tandem_mtls_trust_anchors after root b left: %q", got)
	}
	if _, serr := handshake(t, fromB.ClientTLS(orders), server.ServerTLS()); serr == nil {
		t.Fatal("root b still trusted after it left the bundle")
	}
	write([]byte("not PEM"))
	if err := server.loadBundle(); err == nil {
		t.Fatal("a broken bundle was taken")
	}
	fromA := newSource(t, a, front, BundleSource{})
	if _, serr := handshake(t, fromA.ClientTLS(orders), server.ServerTLS()); serr != nil {
		t.Fatalf("the previous bundle was dropped with the broken one: %v", serr)
	}
}

// gaugeLabels are the label values of a one-label gauge's series that are
// 1, sorted and joined by spaces.
func gaugeLabels(t *testing.T, g *prometheus.GaugeVec) string {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	g.Collect(ch)
	close(ch)
	var out []string
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		if pb.GetGauge().GetValue() == 1 {
			out = append(out, pb.GetLabel()[0].GetValue())
		}
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// ParseCA takes back what a CA writes, and refuses a key that is not the
// certificate's; InBundle finds the CA's root in a bundle of several.
func TestParseCA(t *testing.T) {
	a, _ := NewCA("root-a", time.Hour)
	b, _ := NewCA("root-b", time.Hour)
	keyA, _ := a.KeyPEM()
	keyB, _ := b.KeyPEM()
	back, err := ParseCA(a.CertPEM(), keyA)
	if err != nil || back.Name() != "root-a" {
		t.Fatalf("ParseCA of root-a: %v, %v", back, err)
	}
	if _, err := ParseCA(a.CertPEM(), keyB); err == nil || !strings.Contains(err.Error(), "not the certificate's") {
		t.Errorf("root-a's certificate with root-b's key: %v", err)
	}
	if !a.InBundle(append(b.CertPEM(), a.CertPEM()...)) || a.InBundle(b.CertPEM()) || a.InBundle([]byte("not PEM")) {
		t.Error("InBundle")
	}
}

func TestParse(t *testing.T) {
	id, err := Parse("spiffe://public/ns/default/front")
	if err != nil || id != (ID{"public", "default", "front"}) || id.String() != "spiffe://public/ns/default/front" {
		t.Fatalf("%v %v", id, err)
	}
	for _, bad := range []string{"http://public/ns/default/front", "spiffe://public/default/front", "spiffe://public/ns/default/Front_1",
		"spiffe:///ns/default/front", "spiffe://public/ns/default/front?x", "spiffe://public/ns/default/front/extra"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// Renewal is two thirds into the certificate's life, not at once (the
// certificate's NotBefore is backdated).
func TestRenewAt(t *testing.T) {
	ca, _ := NewCA("root", time.Hour)
	s, err := NewSource(context.Background(), SourceConfig{ID: ID{"public", "default", "a"}, Bundle: BundleSource{PEM: ca.CertPEM()},
		Issue: func(_ context.Context, csr []byte) ([][]byte, error) {
			return ca.Sign(csr, ID{"public", "default", "a"}, 30*time.Second)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(s.renewAt()); d < 15*time.Second || d > 21*time.Second {
		t.Errorf("renewal in %v; want about 20s for a 30s certificate", d)
	}
}

// A patient source starts without a certificate while its CA is down, is
// not ready, and gets one once the CA answers.
func TestPatientSource(t *testing.T) {
	ca, _ := NewCA("root", time.Hour)
	id := ID{"public", "default", "a"}
	var down atomic.Bool
	down.Store(true)
	s, err := NewSource(context.Background(), SourceConfig{ID: id, Patient: true, Bundle: BundleSource{PEM: ca.CertPEM()},
		Issue: func(_ context.Context, csr []byte) ([][]byte, error) {
			if down.Load() {
				return nil, errors.New("connection refused")
			}
			return ca.Sign(csr, id, time.Hour)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Ready() {
		t.Fatal("ready without a certificate")
	}
	if _, err := s.current(); err == nil {
		t.Fatal("a certificate before the CA answered")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Run(ctx) }()
	down.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for !s.Ready() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !s.Ready() {
		t.Fatal("no certificate after the CA came back")
	}
}
