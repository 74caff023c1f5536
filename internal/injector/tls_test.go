package injector

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writePair(t *testing.T, dir string, ss *SelfSigned) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	key, err := x509.MarshalPKCS8PrivateKey(ss.Cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ss.Cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestSelfSignedVerifiesForItsHosts(t *testing.T) {
	ss, err := NewSelfSigned([]string{"tandem-injector.tandem-system.svc", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ss.CAPEM) {
		t.Fatal("CAPEM holds no certificate")
	}
	leaf, err := x509.ParseCertificate(ss.Cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"tandem-injector.tandem-system.svc", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.svc"}); err == nil {
		t.Error("the certificate verifies for a host it was not made for")
	}
}

// A new pair written over the files is served from the next handshake on
// (after the once-a-second check); a half-written pair is not.
func TestFileCertReloads(t *testing.T) {
	dir := t.TempDir()
	first, _ := NewSelfSigned([]string{"one.svc"})
	certFile, keyFile := writePair(t, dir, first)
	fc, err := NewFileCert(certFile, keyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	serving := func() string {
		fc.mu.Lock()
		fc.lastCheck = time.Time{} // do not wait a second in a test
		fc.mu.Unlock()
		c, err := fc.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(c.Certificate[0])
		return leaf.Subject.CommonName
	}
	if got := serving(); got != "one.svc" {
		t.Fatalf("serving %s", got)
	}
	// Half written: a new certificate with the old key. The old pair stays.
	second, _ := NewSelfSigned([]string{"two.svc"})
	later := time.Now().Add(2 * time.Second)
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: second.Cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(certFile, later, later)
	if got := serving(); got != "one.svc" {
		t.Errorf("a mismatched pair replaced the certificate: serving %s", got)
	}
	writePair(t, dir, second)
	later = later.Add(2 * time.Second)
	_ = os.Chtimes(certFile, later, later)
	_ = os.Chtimes(keyFile, later, later)
	if got := serving(); got != "two.svc" {
		t.Errorf("after rotation serving %s, want two.svc", got)
	}
	if _, err := NewFileCert(filepath.Join(dir, "missing"), keyFile, nil); err == nil {
		t.Error("a missing certificate file was accepted")
	}
}

// BenchmarkReview is the cost of admitting one pod of the calculator:
// decode, check, build the patch.
func BenchmarkReview(b *testing.B) {
	ar := reviewOf("Pod", rsController, goodPod)
	b.ReportAllocs()
	for b.Loop() {
		if r := Review(testConfig, ar).Response; r.Patch == nil {
			b.Fatal("no patch")
		}
	}
}
