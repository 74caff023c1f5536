package injector

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/tandem-run/tandem/internal/identity"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// FileCert serves the certificate of a cert and key file pair (a mounted
// Secret, e.g. from cert-manager), and picks up new files when they change:
// at most once a second a handshake checks their modification times.
type FileCert struct {
	certFile, keyFile string
	log               *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	certMod   time.Time
	keyMod    time.Time
	lastCheck time.Time
}

// NewFileCert loads the pair once, so that a bad pair fails at start.
func NewFileCert(certFile, keyFile string, log *slog.Logger) (*FileCert, error) {
	f := &FileCert{certFile: certFile, keyFile: keyFile, log: log}
	if err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *FileCert) load() error {
	cs, err := os.Stat(f.certFile)
	if err != nil {
		return fmt.Errorf("--tls-cert-file: %w", err)
	}
	ks, err := os.Stat(f.keyFile)
	if err != nil {
		return fmt.Errorf("--tls-key-file: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return fmt.Errorf("TLS key pair %s, %s: %w", f.certFile, f.keyFile, err)
	}
	f.cert, f.certMod, f.keyMod = &cert, cs.ModTime(), ks.ModTime()
	return nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (f *FileCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.lastCheck) >= time.Second {
		f.lastCheck = time.Now()
		cs, cerr := os.Stat(f.certFile)
		ks, kerr := os.Stat(f.keyFile)
		if cerr == nil && kerr == nil && (!cs.ModTime().Equal(f.certMod) || !ks.ModTime().Equal(f.keyMod)) {
			old := f.cert
			if err := f.load(); err != nil {
				// A half-written pair: keep serving the old one, try again.
				f.cert = old
				f.log.Warn("new TLS files cannot be loaded yet; serving the previous certificate", "err", err)
			} else {
				f.log.Info("TLS certificate reloaded", "cert", f.certFile)
			}
		}
	}
	return f.cert, nil
}

// SelfSigned is a CA made at start and a serving certificate it signed for
// hosts (DNS names or IP addresses). CAPEM is what the webhook
// configuration's caBundle must hold.
type SelfSigned struct {
	Cert  tls.Certificate
	CAPEM []byte
}

// NewSelfSigned makes a CA (valid 10 years) and a serving certificate (1
// year) for hosts, with ECDSA P-256 keys (internal/identity's CA, which
// also signs the sidecars' certificates when mutual TLS is on).
func NewSelfSigned(hosts []string) (*SelfSigned, error) {
	if len(hosts) == 0 {
		return nil, fmt.Errorf("no host names for the serving certificate")
	}
	ca, err := identity.NewCA("tandem-injector-ca", 10*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	cert, err := ca.ServingCert(hosts, 365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	return &SelfSigned{Cert: cert, CAPEM: ca.CertPEM()}, nil
}

// PatchCABundle writes caPEM into every webhook of the
// MutatingWebhookConfiguration name, and keeps trying (the configuration
// may be created after the injector starts) until it has or ctx ends. It
// runs beside the server, never on the admission path.
func PatchCABundle(ctx context.Context, client kubernetes.Interface, name string, caPEM []byte, log *slog.Logger) error {
	wait := 500 * time.Millisecond
	for {
		err := patchOnce(ctx, client, name, caPEM)
		if err == nil {
			log.Info("webhook caBundle set", "webhook_configuration", name)
			return nil
		}
		log.Warn("cannot set the webhook caBundle yet; retrying", "webhook_configuration", name, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("setting the caBundle of MutatingWebhookConfiguration %q: %w", name, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func patchOnce(ctx context.Context, client kubernetes.Interface, name string, caPEM []byte) error {
	api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	wc, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	changed := false
	for i := range wc.Webhooks {
		if !bytes.Equal(wc.Webhooks[i].ClientConfig.CABundle, caPEM) {
			wc.Webhooks[i].ClientConfig.CABundle = caPEM
			changed = true
		}
	}
	if len(wc.Webhooks) == 0 {
		return fmt.Errorf("MutatingWebhookConfiguration %q has no webhooks", name)
	}
	if !changed {
		return nil
	}
	_, err = api.Update(ctx, wc, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return fmt.Errorf("changed meanwhile: %w", err)
	}
	return err
}
