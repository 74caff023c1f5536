package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The floor is two bare httputil.ReverseProxy processes in a row, this
// binary re-run in floor proxy mode:
//
//	bench -floor-proxy LISTEN TARGET [CERTS]
//
// LISTEN is http://host:port or https://host:port, TARGET the URL it
// forwards to. The plaintext floor is ReverseProxy with its defaults. The
// TLS floor has TLS between its two proxies as sidecars have it: TLS 1.3
// with a certificate on both sides checked against one CA, HTTP/2 over one
// reused connection, sessions cached. CERTS is the folder floorCerts
// writes; the client side of each proxy stays plaintext, as it is for the
// sidecars.
func serveFloorProxy(args []string) error {
	if len(args) < 2 || len(args) > 3 {
		return fmt.Errorf("usage: -floor-proxy LISTEN TARGET [CERTS], got %q", args)
	}
	certs := ""
	if len(args) == 3 {
		certs = args[2]
	}
	srv, listen, err := newFloorProxy(args[0], args[1], certs)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	announce(ln)
	return serveFloor(srv, ln)
}

// announce tells the harness where a floor process listens: its first line
// of output (see floorProcess). A floor binds port 0, so no other process
// can take its port between the harness choosing it and the floor binding.
func announce(ln net.Listener) { fmt.Printf("listening on %s\n", ln.Addr()) }

// floorProcess starts this binary in a floor mode, with extraEnv added to
// its environment, and returns it with the address it announced.
func (e *env) floorProcess(name string, extraEnv []string, args ...string) (*proc, string, error) {
	p, err := start(name, e.self, extraEnv, args...)
	if err != nil {
		return nil, "", err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := p.Out.String()
		if line, _, ok := strings.Cut(out, "\n"); ok {
			if addr, ok := strings.CutPrefix(line, "listening on "); ok {
				return p, addr, nil
			}
			p.stop()
			return nil, "", fmt.Errorf("%s: %s", name, out)
		}
		select {
		case <-p.Done():
			return nil, "", fmt.Errorf("%s exited: %v\n%s", name, p.Err(), p.Out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, "", fmt.Errorf("%s did not announce its address in 10 s: %s", name, out)
		}
	}
}

// newFloorProxy is one hop of a floor; it returns the server and the
// host:port to listen on.
func newFloorProxy(listen, target, certs string) (*http.Server, string, error) {
	lu, err := url.Parse(listen)
	if err != nil || (lu.Scheme != "http" && lu.Scheme != "https") || lu.Host == "" {
		return nil, "", fmt.Errorf("listen %q: give http://host:port or https://host:port", listen)
	}
	tu, err := url.Parse(target)
	if err != nil || (tu.Scheme != "http" && tu.Scheme != "https") || tu.Host == "" {
		return nil, "", fmt.Errorf("target %q: give http://host:port or https://host:port", target)
	}
	proxy := httputil.NewSingleHostReverseProxy(tu)
	srv := &http.Server{Handler: proxy}
	if lu.Scheme == "http" && tu.Scheme == "http" {
		return srv, lu.Host, nil
	}
	if certs == "" {
		return nil, "", fmt.Errorf("TLS on %s or %s needs the certificates folder", listen, target)
	}
	server, client, err := floorTLS(certs)
	if err != nil {
		return nil, "", err
	}
	if lu.Scheme == "https" {
		srv.TLSConfig = server
	}
	if tu.Scheme == "https" {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = client
		t.ForceAttemptHTTP2 = true
		proxy.Transport = t
	}
	return srv, lu.Host, nil
}

// serveFloor serves srv on ln, with TLS when srv has a TLS configuration.
func serveFloor(srv *http.Server, ln net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(ln, "", "")
	}
	return srv.Serve(ln)
}

// floorTLS reads the folder floorCerts wrote: the server and client
// configurations of the TLS floor's hop.
func floorTLS(dir string) (server, client *tls.Config, err error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return nil, nil, fmt.Errorf("floor certificates: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, nil, fmt.Errorf("floor certificates: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("floor certificates: no certificate in %s", filepath.Join(dir, "ca.pem"))
	}
	server = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	client = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		RootCAs: pool, ClientSessionCache: tls.NewLRUClientSessionCache(0)}
	return server, client, nil
}

// floorCerts writes a CA (ca.pem) and one certificate for 127.0.0.1 that
// serves and authenticates clients (cert.pem, key.pem) into dir: ECDSA
// P-256, as the sidecars' own.
func floorCerts(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench floor CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "bench floor"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	for name, block := range map[string]*pem.Block{
		"ca.pem": {Type: "CERTIFICATE", Bytes: caDER}, "cert.pem": {Type: "CERTIFICATE", Bytes: der},
		"key.pem": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// floor starts the two proxies of a floor in front of the app and returns
// them, front first, with the front's address. With tls, the hop between
// them is the TLS floor's.
func (e *env) floor(tls bool) ([]*proc, string, error) {
	scheme, certs := "http://", []string(nil)
	if tls {
		if e.floorCerts == "" {
			e.floorCerts = filepath.Join(e.dir, "floor-certs")
			if err := floorCerts(e.floorCerts); err != nil {
				return nil, "", err
			}
		}
		scheme, certs = "https://", []string{e.floorCerts}
	}
	return e.floorPair("floor",
		append([]string{"-floor-proxy", scheme + "127.0.0.1:0", "http://" + e.appAddr}, certs...),
		func(back string) []string {
			return append([]string{"-floor-proxy", "http://127.0.0.1:0", scheme + back}, certs...)
		})
}

// grpcFloor starts n bare gRPC proxies in a row in front of the gRPC app,
// each with extraEnv added to its environment, and returns them, front
// first, with the front's address.
func (e *env) grpcFloor(n int, extraEnv []string) ([]*proc, string, error) {
	var procs []*proc
	target := e.grpcAddr
	for i := n; i >= 1; i-- {
		p, addr, err := e.floorProcess("grpc-floor-"+itoa(i), extraEnv, "-grpc-floor-proxy", "127.0.0.1:0", target)
		if err != nil {
			stopAll(procs)
			return nil, "", err
		}
		procs = append([]*proc{p}, procs...)
		target = addr
	}
	return procs, target, nil
}

// floorPair starts a floor's back process with the arguments back, then
// its front one with front(the back's address), and returns them, front
// first, with the front's address.
func (e *env) floorPair(name string, back []string, front func(backAddr string) []string) ([]*proc, string, error) {
	p2, backAddr, err := e.floorProcess(name+"-2", nil, back...)
	if err != nil {
		return nil, "", err
	}
	p1, frontAddr, err := e.floorProcess(name+"-1", nil, front(backAddr)...)
	if err != nil {
		p2.stop()
		return nil, "", err
	}
	return []*proc{p1, p2}, frontAddr, nil
}
