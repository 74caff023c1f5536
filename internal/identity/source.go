package identity

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Issuer gets a certificate chain (DER, leaf first) for a certificate
// request (DER) of the source's ID: a local CA, or the control plane's.
type Issuer func(ctx context.Context, csrDER []byte) ([][]byte, error)

// SourceConfig is what a Source needs.
type SourceConfig struct {
	ID     ID
	Issue  Issuer
	TTL    time.Duration // asked of the issuer; renewal at two thirds of the certificate's life
	Bundle BundleSource  // the roots to trust
	Logger *slog.Logger
	// Registerer, when set, gets the certificate's expiry, renewals and the
	// peers' certificates seen by root.
	Registerer prometheus.Registerer
	// Patient: when the first certificate cannot be had (the CA is down),
	// NewSource returns anyway and Run keeps asking; the sidecar serves
	// nothing between sidecars and is not ready meanwhile, but it is not
	// restarted for it. Otherwise NewSource fails.
	Patient bool
}

// BundleSource is where the trust bundle comes from: a PEM file that is
// watched, or fixed PEM.
type BundleSource struct {
	File string // reloaded when it changes
	PEM  []byte // used when File is empty
}

// Source is a sidecar's identity: its current certificate, renewed before
// expiry, and the trust bundle. It is safe for concurrent use.
type Source struct {
	cfg    SourceConfig
	cert   atomic.Pointer[tls.Certificate]
	gen    atomic.Uint64 // counts certificates
	issued atomic.Int64  // when the current certificate was received (Unix nanoseconds)
	bundle atomic.Pointer[bundle]

	expiry    prometheus.Gauge
	issuer    *prometheus.GaugeVec
	anchors   *prometheus.GaugeVec
	renewals  *prometheus.CounterVec
	peers     *prometheus.CounterVec
	plaintext prometheus.Counter
}

type bundle struct {
	pool *x509.CertPool
	sum  [32]byte
}

// NewSource gets the first certificate and reads the bundle, so that a
// sidecar has its identity before it serves.
func NewSource(ctx context.Context, cfg SourceConfig) (*Source, error) {
	if err := cfg.ID.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Source{cfg: cfg}
	s.expiry = prometheus.NewGauge(prometheus.GaugeOpts{Name: "tandem_mtls_certificate_expiry_timestamp_seconds",
		Help: "When this sidecar's certificate expires (Unix time)."})
	s.issuer = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tandem_mtls_certificate_info",
		Help: "1, labelled with the root (common name) that signed this sidecar's current certificate: after the CA's root changes, a sidecar still on the old one has not renewed yet."}, []string{"issuer"})
	s.anchors = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tandem_mtls_trust_anchors",
		Help: "1 for each root (common name) in this sidecar's trust bundle: during a rotation, a root is safe to sign with once every sidecar trusts it."}, []string{"root"})
	s.renewals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_mtls_certificate_renewals_total",
		Help: "Certificates asked for by this sidecar (the first and each renewal), by outcome."}, []string{"outcome"})
	s.peers = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_mtls_peer_certificates_total",
		Help: "Verified peer certificates on the internal port, by the root they chain to."}, []string{"root"})
	s.plaintext = prometheus.NewCounter(prometheus.CounterOpts{Name: "tandem_hop_plaintext_calls_total",
		Help: "Calls between sidecars without mutual TLS, accepted during a rollout (--allow-plaintext-peers)."})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.expiry, s.issuer, s.anchors, s.renewals, s.peers, s.plaintext} {
			if err := cfg.Registerer.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					return nil, err
				}
			}
		}
	}
	if err := s.loadBundle(); err != nil {
		return nil, err
	}
	if err := s.renew(ctx); err != nil {
		if !cfg.Patient {
			return nil, fmt.Errorf("getting the certificate of %s: %w", cfg.ID, err)
		}
		cfg.Logger.Error("no certificate yet; asking again, and not ready until one comes", "id", cfg.ID.String(), "err", err)
	}
	return s, nil
}

// ID is the source's identity.
func (s *Source) ID() ID { return s.cfg.ID }

// Generation counts the certificates the source has had: connections made
// with an older one are replaced by new ones (see the hop's pool), so that
// peers see the renewed certificate.
func (s *Source) Generation() uint64 { return s.gen.Load() }

// NotAfter is when the current certificate expires; zero before the first.
func (s *Source) NotAfter() time.Time {
	if c := s.cert.Load(); c != nil && c.Leaf != nil {
		return c.Leaf.NotAfter
	}
	return time.Time{}
}

// Ready reports whether the source holds a certificate that is valid now.
func (s *Source) Ready() bool {
	c := s.cert.Load()
	return c != nil && time.Now().Before(c.Leaf.NotAfter)
}

// Run renews the certificate at two thirds of its life (retrying with
// backoff while it is still valid; a CA outage never stops the sidecar) and
// reloads the bundle file when it changes, until ctx ends.
func (s *Source) Run(ctx context.Context) error {
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	retry := time.Second
	next := s.renewAt()
	for {
		timer := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-poll.C:
			timer.Stop()
			if err := s.loadBundle(); err != nil {
				s.cfg.Logger.Error("trust bundle not reloaded; the previous roots stay in use", "file", s.cfg.Bundle.File, "err", err)
			}
			continue
		case <-timer.C:
		}
		if err := s.renew(ctx); err != nil {
			var expires any = "no certificate yet"
			if c := s.cert.Load(); c != nil {
				expires = c.Leaf.NotAfter
			}
			s.cfg.Logger.Error("renewing the certificate failed; the current one serves on while it is valid", "id", s.cfg.ID.String(),
				"expires", expires, "retry_in", retry, "err", err)
			next = time.Now().Add(retry)
			retry = min(2*retry, time.Minute)
			continue
		}
		retry = time.Second
		next = s.renewAt()
	}
}

// renewAt is two thirds into the certificate's life as this sidecar has it
// (its NotBefore is backdated for clock skew), and at least a second away.
func (s *Source) renewAt() time.Time {
	if s.cert.Load() == nil {
		return time.Now() // none yet: the caller's backoff paces the tries
	}
	issued := time.Unix(0, s.issued.Load())
	at := issued.Add(s.cert.Load().Leaf.NotAfter.Sub(issued) * 2 / 3)
	return later(at, time.Now().Add(time.Second))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// renew makes a new key and gets a certificate for it.
func (s *Source) renew(ctx context.Context) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: s.cfg.ID.AppID},
		URIs:    []*url.URL{s.cfg.ID.URL()},
	}, key)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	chain, err := s.cfg.Issue(ctx, csr)
	if err != nil {
		s.renewals.WithLabelValues("failed").Inc()
		return err
	}
	if len(chain) == 0 {
		s.renewals.WithLabelValues("failed").Inc()
		return errors.New("the CA answered with no certificate")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		s.renewals.WithLabelValues("failed").Inc()
		return err
	}
	if id, err := FromCert(leaf); err != nil || id != s.cfg.ID {
		s.renewals.WithLabelValues("failed").Inc()
		return fmt.Errorf("the CA issued a certificate for %v, not %s (%v)", id, s.cfg.ID, err)
	}
	s.issued.Store(time.Now().UnixNano())
	s.cert.Store(&tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf})
	s.gen.Add(1)
	s.expiry.Set(float64(leaf.NotAfter.Unix()))
	s.issuer.Reset()
	s.issuer.WithLabelValues(leaf.Issuer.CommonName).Set(1)
	s.renewals.WithLabelValues("ok").Inc()
	s.cfg.Logger.Info("certificate issued", "id", s.cfg.ID.String(), "expires", leaf.NotAfter)
	return nil
}

// loadBundle reads the trust bundle; an unchanged file is not parsed again,
// and one that holds no certificate leaves the previous bundle in use.
func (s *Source) loadBundle() error {
	b := s.cfg.Bundle.PEM
	if f := s.cfg.Bundle.File; f != "" {
		var err error
		if b, err = os.ReadFile(f); err != nil {
			return fmt.Errorf("trust bundle: %w", err)
		}
	}
	sum := sha256.Sum256(b)
	if cur := s.bundle.Load(); cur != nil && cur.sum == sum {
		return nil
	}
	pool := x509.NewCertPool()
	var names []string
	for rest := bytes.TrimSpace(b); len(rest) > 0; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil || !c.IsCA {
			return fmt.Errorf("trust bundle %s: a certificate is not a CA's (%v)", s.cfg.Bundle.File, err)
		}
		pool.AddCert(c)
		names = append(names, c.Subject.CommonName)
	}
	if len(names) == 0 {
		return fmt.Errorf("trust bundle %s holds no certificate", s.cfg.Bundle.File)
	}
	s.anchors.Reset()
	for _, name := range names {
		s.anchors.WithLabelValues(name).Set(1)
	}
	if s.bundle.Swap(&bundle{pool: pool, sum: sum}) != nil {
		s.cfg.Logger.Info("trust bundle reloaded", "file", s.cfg.Bundle.File, "roots", names)
	}
	return nil
}

// verify checks a peer's chain against the current bundle for usage and
// returns the peer's ID and the root it chains to.
func (s *Source) verify(rawCerts [][]byte, usage x509.ExtKeyUsage) (ID, *x509.Certificate, error) {
	if len(rawCerts) == 0 {
		return ID{}, nil, errors.New("the peer presented no certificate")
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return ID{}, nil, err
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{Roots: s.bundle.Load().pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		return ID{}, nil, fmt.Errorf("the peer's certificate does not verify against the trust bundle: %w", err)
	}
	id, err := FromCert(certs[0])
	if err != nil {
		return ID{}, nil, err
	}
	root := chains[0][len(chains[0])-1]
	return id, root, nil
}

// current is the certificate to present, or an error before the first.
func (s *Source) current() (*tls.Certificate, error) {
	if c := s.cert.Load(); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("%s has no certificate yet: its CA has not answered", s.cfg.ID)
}

// ServerTLS is the internal port's TLS: TLS 1.3, a client certificate
// required and verified against the bundle, from this sidecar's trust
// domain. The caller's ID is then FromCert of the connection's first peer
// certificate.
func (s *Source) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.current()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			raw := make([][]byte, len(cs.PeerCertificates))
			for i, c := range cs.PeerCertificates {
				raw[i] = c.Raw
			}
			id, root, err := s.verify(raw, x509.ExtKeyUsageClientAuth)
			if err != nil {
				return err
			}
			if id.TrustDomain != s.cfg.ID.TrustDomain {
				return fmt.Errorf("the caller %s is not of trust domain %q", id, s.cfg.ID.TrustDomain)
			}
			s.peers.WithLabelValues(root.Subject.CommonName).Inc()
			return nil
		},
	}
}

// ClientTLS is the TLS of a call to a peer that must be want: TLS 1.3, this
// sidecar's certificate, and the peer's verified against the bundle and
// checked to be want's.
func (s *Source) ClientTLS(want ID) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		// The chain and the SPIFFE ID are checked below: peers have no
		// DNS names in their certificates.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.current()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			raw := make([][]byte, len(cs.PeerCertificates))
			for i, c := range cs.PeerCertificates {
				raw[i] = c.Raw
			}
			id, _, err := s.verify(raw, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			if id != want {
				return fmt.Errorf("the peer is %s, not %s: its address is stale or it poses as another app", id, want)
			}
			return nil
		},
	}
}

// CountPlaintext counts a call from or to a peer without TLS (accepted
// during a rollout with --allow-plaintext-peers).
func (s *Source) CountPlaintext() { s.plaintext.Inc() }

type ctxKey struct{}

// NewContext returns ctx carrying id, a caller's verified identity.
func NewContext(ctx context.Context, id ID) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the verified identity of the caller, if any.
func FromContext(ctx context.Context) (ID, bool) {
	id, ok := ctx.Value(ctxKey{}).(ID)
	return id, ok
}

type unverifiedKey struct{}

// NewUnverifiedContext returns ctx marking the caller as a peer without
// mutual TLS (accepted during a rollout with --allow-plaintext-peers): it
// has no identity, whatever it says. claimed is the app id its sidecar
// sent, for messages only: nothing may be decided on it.
func NewUnverifiedContext(ctx context.Context, claimed string) context.Context {
	return context.WithValue(ctx, unverifiedKey{}, claimed)
}

// Unverified reports whether ctx marks the caller as a peer without mutual
// TLS, and the app id it claimed.
func Unverified(ctx context.Context) (claimed string, ok bool) {
	claimed, ok = ctx.Value(unverifiedKey{}).(string)
	return claimed, ok
}
