package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/tandem-run/tandem/internal/identity"
)

// metric sums the samples of a metric whose labels contain every part of
// labels, read from a sidecar's metrics port.
func metric(t *testing.T, metricsPort int, name string, labels ...string) float64 {
	t.Helper()
	_, b := do(t, "GET", "http://127.0.0.1:"+strconv.Itoa(metricsPort)+"/metrics", nil, nil)
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// peerClient is an HTTP/2 client of a sidecar's internal port with cert (or
// none), as another process on the machine would make one.
func peerClient(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}} //nolint:gosec // a test's peer
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http2.Transport{TLSClientConfig: cfg}}
}

// certFor mints a certificate for id from the CA in dir, as a process that
// can read the registry folder could.
func certFor(t *testing.T, caDir string, id identity.ID) *tls.Certificate {
	t.Helper()
	ca, err := identity.LocalCA{Dir: caDir}.Load()
	if err != nil {
		t.Fatal(err)
	}
	return signed(t, ca, id)
}

func signed(t *testing.T, ca *identity.CA, id identity.ID) *tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := ca.Sign(csr, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(chain[0])
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}
}

// By default every hop is mutual TLS: the app's dapr-caller-app-id is the
// caller's verified identity, a forged header changes nothing, and a peer
// without a certificate of the registry's CA, or with one for an app the
// policy refuses, never reaches the app.
func TestMTLSIdentity(t *testing.T) {
	conf := allowOnly(t, "front")
	w := newWorld(t)
	app := newRecordingApp(t)
	callee := w.sidecar("orders", app.port, "--config", conf)
	echoPort, _ := w.app("echoer")
	echo := w.sidecar("echoer", echoPort)
	front := w.sidecar("front", 0)
	callee.waitHealthy(t)
	echo.waitHealthy(t)

	// The verified id reaches the app, whatever the caller's app sent.
	resp, b := do(t, "GET", front.url+"/v1.0/invoke/echoer/method/echo/x", nil, http.Header{"Dapr-Caller-App-Id": {"admin"}})
	var seen struct{ Headers map[string][]string }
	if err := json.Unmarshal(b, &seen); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if got := seen.Headers["Dapr-Caller-App-Id"]; len(got) != 1 || got[0] != "front" {
		t.Errorf("the app saw caller %v, want [front]", got)
	}
	if resp, b := do(t, "GET", front.url+"/v1.0/invoke/orders/method/x", nil, nil); resp.StatusCode != 200 || app.received() != 1 {
		t.Fatalf("front -> orders: %d %s", resp.StatusCode, b)
	}

	internal, metricsPort := sidecarPorts(t, callee)
	url := "https://127.0.0.1:" + strconv.Itoa(internal) + "/x"
	call := func(c *http.Client, callerHeader string) (int, error) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Dapr-Callee-App-Id", "orders")
		req.Header.Set("Dapr-Caller-App-Id", callerHeader)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	caDir := filepath.Join(w.registry, "ca")
	// A certificate for another app, from the right CA: the forged
	// header says "front", the certificate says "intruder"; refused.
	if code, err := call(peerClient(certFor(t, caDir, identity.ID{TrustDomain: "public", Namespace: "default", AppID: "intruder"})), "front"); err != nil || code != 403 {
		t.Errorf("a certificate for another app id: %d %v, want 403", code, err)
	}
	// A certificate of another CA: the handshake fails.
	other, _ := identity.NewCA("someone else's CA", time.Hour)
	if _, err := call(peerClient(signed(t, other, identity.ID{TrustDomain: "public", Namespace: "default", AppID: "front"})), "front"); err == nil {
		t.Error("a certificate of another CA was accepted")
	}
	// No certificate: the handshake fails.
	if _, err := call(peerClient(nil), "front"); err == nil {
		t.Error("a client without a certificate was accepted")
	}
	// Plaintext h2c: refused before any request is read, saying why.
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(internal))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, http2.ClientPreface)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(c)
	c.Close()
	if !bytes.Contains(got, []byte("requires mutual TLS")) {
		t.Errorf("a plaintext peer got %q, want a GOAWAY saying mutual TLS is required", got)
	}
	if n := app.received(); n != 1 {
		t.Errorf("the app received %d requests; only front's one was allowed", n)
	}
	if n := metric(t, metricsPort, "tandem_mtls_peer_certificates_total"); n < 2 {
		t.Errorf("verified peer certificates: %v", n)
	}
	if n := metric(t, metricsPort, "tandem_mtls_certificate_expiry_timestamp_seconds"); n < float64(time.Now().Unix()) {
		t.Errorf("certificate expiry metric %v is not in the future", n)
	}
}

// A rollout from plaintext: a sidecar with --allow-plaintext-peers takes
// calls from peers without mutual TLS and calls such peers in plaintext,
// counting each; without it, a plaintext caller is told what to change.
func TestMTLSRollout(t *testing.T) {
	w := newWorld(t)
	newPort, _ := w.app("newapp")
	oldPort, _ := w.app("oldapp")
	strictPort, _ := w.app("strictapp")
	newer := w.sidecar("newapp", newPort, "--allow-plaintext-peers")
	older := w.sidecar("oldapp", oldPort, "--enable-mtls=false")
	strict := w.sidecar("strictapp", strictPort)
	for _, s := range []*sidecar{newer, older, strict} {
		s.waitHealthy(t)
	}
	_, newMetrics := sidecarPorts(t, newer)
	for _, c := range []struct {
		from *sidecar
		to   string
	}{{older, "newapp"}, {newer, "oldapp"}, {newer, "strictapp"}} {
		if resp, b := do(t, "GET", c.from.url+"/v1.0/invoke/"+c.to+"/method/echo/x", nil, nil); resp.StatusCode != 200 {
			t.Errorf("%s -> %s: %d %s", c.from.appID, c.to, resp.StatusCode, b)
		}
	}
	if n := metric(t, newMetrics, "tandem_hop_plaintext_calls_total"); n != 2 {
		t.Errorf("plaintext calls counted by the rolling sidecar: %v, want 2 (one in, one out)", n)
	}
	resp, b := do(t, "GET", older.url+"/v1.0/invoke/strictapp/method/echo/x", nil, nil)
	if resp.StatusCode != 500 || !strings.Contains(string(b), "requires mutual TLS") || !strings.Contains(string(b), "--enable-mtls") {
		t.Errorf("plaintext caller to a strict sidecar: %d %s", resp.StatusCode, b)
	}
}

// During a rollout a caller without mutual TLS has no identity: a policy
// for the app id it claims does not apply to it (the default action does),
// and no app is told a caller id that was not verified; the same app over
// mutual TLS is allowed and named.
func TestMTLSPlaintextCallerUnverified(t *testing.T) {
	conf := allowOnly(t, "a")
	w := newWorld(t)
	app := newRecordingApp(t)
	callee := w.sidecar("orders", app.port, "--allow-plaintext-peers", "--config", conf)
	echoPort, _ := w.app("echoer")
	echo := w.sidecar("echoer", echoPort, "--allow-plaintext-peers")
	verified := w.sidecar("a", 0)
	plain := w.sidecar("a", 0, "--enable-mtls=false")
	callee.waitHealthy(t)
	echo.waitHealthy(t)
	internal, metricsPort := sidecarPorts(t, callee)

	// A plaintext sidecar of app "a": denied, saying why.
	resp, b := do(t, "GET", plain.url+"/v1.0/invoke/orders/method/x", nil, nil)
	if resp.StatusCode != 403 || !strings.Contains(string(b), `"errorCode":"ERR_PERMISSION_DENIED"`) || !strings.Contains(string(b), "no verified identity") {
		t.Errorf("plaintext caller claiming app a: %d %s, want 403 ERR_PERMISSION_DENIED", resp.StatusCode, b)
	}
	// Any process that reaches the internal port, claiming to be "a":
	// denied.
	h2c := &http.Client{Timeout: 5 * time.Second, Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}
	req, _ := http.NewRequest("GET", "http://127.0.0.1:"+strconv.Itoa(internal)+"/x", nil)
	req.Header.Set("Dapr-Callee-App-Id", "orders")
	req.Header.Set("Dapr-Caller-App-Id", "a")
	if resp, err := h2c.Do(req); err != nil {
		t.Errorf("h2c call claiming app a: %v", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 || !strings.Contains(string(body), "no verified identity") {
			t.Errorf("h2c call claiming app a: %d %s, want 403", resp.StatusCode, body)
		}
	}
	if n := app.received(); n != 0 {
		t.Fatalf("the app received %d calls from unverified callers", n)
	}
	// The sidecar of app "a" with mutual TLS: allowed.
	if resp, b := do(t, "GET", verified.url+"/v1.0/invoke/orders/method/x", nil, nil); resp.StatusCode != 200 || app.received() != 1 {
		t.Errorf("app a over mutual TLS: %d %s, app received %d", resp.StatusCode, b, app.received())
	}
	if n := metric(t, metricsPort, "tandem_hop_plaintext_calls_total"); n != 2 {
		t.Errorf("plaintext calls counted: %v, want 2", n)
	}

	// Without access control a plaintext call passes, but the app sees no
	// caller id; over mutual TLS it sees the verified one.
	for _, c := range []struct {
		from *sidecar
		want []string
	}{{plain, nil}, {verified, []string{"a"}}} {
		resp, b := do(t, "GET", c.from.url+"/v1.0/invoke/echoer/method/echo/x", nil, http.Header{"Dapr-Caller-App-Id": {"admin"}})
		var seen struct{ Headers map[string][]string }
		if err := json.Unmarshal(b, &seen); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		if got := seen.Headers["Dapr-Caller-App-Id"]; !slices.Equal(got, c.want) {
			t.Errorf("the app saw caller %v, want %v", got, c.want)
		}
		if got := seen.Headers["Dapr-Caller-Namespace"]; len(got) != 0 {
			t.Errorf("the app saw caller namespace %v", got)
		}
	}
}

// load calls url from several goroutines until stop closes, counting
// successes and failures (with the first failure kept).
type load struct {
	ok, failed atomic.Int64
	first      atomic.Value
	wg         sync.WaitGroup
	stop       chan struct{}
}

func startLoad(url string, workers int) *load {
	l := &load{stop: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := client.Get(url)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = errorString("status " + strconv.Itoa(resp.StatusCode))
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.first.CompareAndSwap(nil, err.Error())
				} else {
					l.ok.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return l
}

func (l *load) end() { close(l.stop); l.wg.Wait() }

type errorString string

func (e errorString) Error() string { return string(e) }

// Short-lived certificates renew under load with no failed call; and the
// root rotates by hand as docs/identity.md says, with the local CA's trust bundle
// holding both roots meanwhile: the callee sees certificates of both roots,
// and no call fails.
func TestMTLSRenewalAndRotationUnderLoad(t *testing.T) {
	w := newWorld(t)
	caDir := filepath.Join(w.registry, "ca")
	local := identity.LocalCA{Dir: caDir}
	oldCA, err := local.Load()
	if err != nil {
		t.Fatal(err)
	}
	flags := []string{"--workload-cert-ttl", "12s"}
	appPort, _ := w.app("backend")
	callee := w.sidecar("backend", appPort, flags...)
	caller := w.sidecar("front", 0, flags...)
	callee.waitHealthy(t)
	_, calleeMetrics := sidecarPorts(t, callee)
	_, callerMetrics := sidecarPorts(t, caller)

	start := time.Now()
	l := startLoad(caller.url+"/v1.0/invoke/backend/method/echo/x", 4)
	// Renewal: certificates of 12 s renew every 8 s.
	deadline := time.Now().Add(40 * time.Second)
	for time.Now().Before(deadline) && (metric(t, callerMetrics, "tandem_mtls_certificate_renewals_total", `outcome="ok"`) < 3 ||
		metric(t, calleeMetrics, "tandem_mtls_certificate_renewals_total", `outcome="ok"`) < 3) {
		time.Sleep(500 * time.Millisecond)
	}
	for _, m := range []int{callerMetrics, calleeMetrics} {
		if n := metric(t, m, "tandem_mtls_certificate_renewals_total", `outcome="ok"`); n < 3 {
			t.Fatalf("%v certificates issued; want the first and at least two renewals", n)
		}
	}

	t.Logf("two renewals each after %v", time.Since(start).Round(time.Second))

	// Rotation: trust both roots, switch the CA, wait for certificates of
	// the new root, then trust the new root only.
	newCA, err := identity.NewCA("rotated root", 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(local.BundleFile(), append(oldCA.CertPEM(), newCA.CertPEM()...)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the bundle is read every second
	key, _ := newCA.KeyPEM()
	if err := writeAtomic(filepath.Join(caDir, "ca.key"), key); err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(filepath.Join(caDir, "ca.crt"), newCA.CertPEM()); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(40 * time.Second)
	for time.Now().Before(deadline) && metric(t, calleeMetrics, "tandem_mtls_peer_certificates_total", `root="rotated root"`) == 0 {
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(9 * time.Second) // every certificate is of the new root now
	if err := writeAtomic(local.BundleFile(), newCA.CertPEM()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	l.end()

	if n := metric(t, calleeMetrics, "tandem_mtls_peer_certificates_total", `root="tandem local CA`); n == 0 {
		t.Error("the callee saw no certificate of the first root")
	}
	if n := metric(t, calleeMetrics, "tandem_mtls_peer_certificates_total", `root="rotated root"`); n == 0 {
		t.Error("the callee saw no certificate of the rotated root")
	}
	if f := l.failed.Load(); f != 0 {
		t.Errorf("%d of %d calls failed during renewal and rotation; first: %v", f, f+l.ok.Load(), l.first.Load())
	}
	if l.ok.Load() < 100 {
		t.Errorf("only %d calls made: the load did not run", l.ok.Load())
	}
	t.Logf("%d calls, %d failed", l.ok.Load(), l.failed.Load())
}

// rootNames are the common names of the certificates in a PEM file of the
// local CA's folder.
func rootNames(t *testing.T, caDir, file string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(caDir, file))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			return names
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, c.Subject.CommonName)
	}
}

// The local CA's root comes to the end of its life (a minute here, through
// TANDEM_LOCAL_CA_TTL) under load: the next root is trusted by every
// running sidecar before it signs, the sidecars that were running move to
// it at their renewal, one started after the switch gets a certificate of
// it, and the old root leaves the bundle once expired. Calls between all of
// them are counted; none fails, and no sidecar restarts.
func TestMTLSLocalCARotation(t *testing.T) {
	w := newWorld(t)
	caDir := filepath.Join(w.registry, "ca")
	env := []string{"TANDEM_LOCAL_CA_TTL=60s"}
	flags := []string{"--workload-cert-ttl", "15s"}
	backendPort, _ := w.app("backend")
	backend := w.sidecarEnv("backend", backendPort, env, flags...)
	front := w.sidecarEnv("front", 0, env, flags...)
	backend.waitHealthy(t)
	front.waitHealthy(t)
	_, backendMetrics := sidecarPorts(t, backend)
	_, frontMetrics := sidecarPorts(t, front)
	first := rootNames(t, caDir, "ca.crt")[0]
	loads := map[string]*load{"front -> backend": startLoad(front.url+"/v1.0/invoke/backend/method/echo/x", 4)}
	defer func() {
		for _, l := range loads {
			select {
			case <-l.stop:
			default:
				l.end()
			}
		}
	}()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 90 s; trust-bundle.pem holds %q, ca.crt %q", what,
					rootNames(t, caDir, "trust-bundle.pem"), rootNames(t, caDir, "ca.crt"))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Two thirds into the root's life: the next root joins the bundle,
	// and every running sidecar trusts it.
	waitFor("the next root in the bundle", func() bool { return len(rootNames(t, caDir, "trust-bundle.pem")) == 2 })
	second := rootNames(t, caDir, "trust-bundle.pem")[1]
	for _, m := range []int{backendMetrics, frontMetrics} {
		waitFor("both roots trusted", func() bool { return metric(t, m, "tandem_mtls_trust_anchors", `root="`+second+`"`) == 1 })
	}
	// After the overlap it signs; a sidecar started now has its
	// certificate, and calls and is called by the sidecars started before.
	waitFor("the next root signing", func() bool { return rootNames(t, caDir, "ca.crt")[0] == second })
	latePort, _ := w.app("late")
	late := w.sidecarEnv("late", latePort, env, flags...)
	late.waitHealthy(t)
	_, lateMetrics := sidecarPorts(t, late)
	if n := metric(t, lateMetrics, "tandem_mtls_certificate_info", `issuer="`+second+`"`); n != 1 {
		t.Errorf("the sidecar started after the switch has no certificate of the new root %q", second)
	}
	loads["late -> backend"] = startLoad(late.url+"/v1.0/invoke/backend/method/echo/x", 2)
	loads["front -> late"] = startLoad(front.url+"/v1.0/invoke/late/method/echo/x", 2)

	// The old root expires and leaves the bundle, and every sidecar's trust.
	waitFor("the old root out of the bundle", func() bool { return slices.Equal(rootNames(t, caDir, "trust-bundle.pem"), []string{second}) })
	for _, m := range []int{backendMetrics, frontMetrics, lateMetrics} {
		waitFor("the old root untrusted", func() bool { return metric(t, m, "tandem_mtls_trust_anchors", `root="`+first+`"`) == 0 })
	}
	time.Sleep(2 * time.Second)
	for _, l := range loads {
		l.end()
	}

	for _, m := range []struct {
		name string
		port int
	}{{"backend", backendMetrics}, {"front", frontMetrics}, {"late", lateMetrics}} {
		if n := metric(t, m.port, "tandem_mtls_certificate_info", `issuer="`+second+`"`); n != 1 {
			t.Errorf("%s's certificate is not of the new root %q", m.name, second)
		}
		if n := metric(t, m.port, "tandem_mtls_trust_anchors"); n != 1 {
			t.Errorf("%s trusts %v roots at the end, want the new one only", m.name, n)
		}
	}
	if n := metric(t, backendMetrics, "tandem_mtls_peer_certificates_total", `root="`+first+`"`); n == 0 {
		t.Error("the backend saw no caller's certificate of the old root")
	}
	if n := metric(t, backendMetrics, "tandem_mtls_peer_certificates_total", `root="`+second+`"`); n == 0 {
		t.Error("the backend saw no caller's certificate of the new root")
	}
	for name, l := range loads {
		if f := l.failed.Load(); f != 0 {
			t.Errorf("%s: %d of %d calls failed through the rotation; first: %v", name, f, f+l.ok.Load(), l.first.Load())
		}
		if l.ok.Load() < 20 {
			t.Errorf("%s: only %d calls made: the load did not run", name, l.ok.Load())
		}
		t.Logf("%s: %d calls, %d failed", name, l.ok.Load(), l.failed.Load())
	}
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// allowOnly writes a Configuration whose access control allows the app
// appID and denies every other caller, and returns its path.
func allowOnly(t *testing.T, appID string) string {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "acl.yaml")
	y := "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: acl\nspec:\n  accessControl:\n" +
		"    defaultAction: deny\n    policies:\n    - appId: " + appID + "\n      defaultAction: allow\n"
	if err := os.WriteFile(conf, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}
