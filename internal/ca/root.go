package ca

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-run/tandem/internal/identity"
)

// The root is a Secret of the control plane's namespace: ca.crt and ca.key
// sign; trust-bundle.pem, when present, is the bundle sidecars trust (for
// a rotation, the old and the new root), and must hold ca.crt. Made by Root,
// it is made once, even when several replicas start together: the Secret's
// creation decides. WatchRoot follows changes to it, so that a rotation
// needs no restart of the control plane either.

// Root reads the CA's root and the trust bundle from the Secret name in
// namespace, or makes the root and creates the Secret when there is none.
// Replicas starting together make one: the first creation wins and the
// others read it.
func Root(ctx context.Context, kube kubernetes.Interface, namespace, name string) (*identity.CA, []byte, error) {
	for range 3 {
		s, err := kube.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			return parseRoot(s)
		}
		if !apierrors.IsNotFound(err) {
			return nil, nil, fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
		}
		ca, err := identity.NewCA("tandem root "+time.Now().UTC().Format(time.RFC3339), 10*365*24*time.Hour)
		if err != nil {
			return nil, nil, err
		}
		key, err := ca.KeyPEM()
		if err != nil {
			return nil, nil, err
		}
		_, err = kube.CoreV1().Secrets(namespace).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"app.kubernetes.io/part-of": "tandem"}},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{"ca.crt": ca.CertPEM(), "ca.key": key},
		}, metav1.CreateOptions{})
		if err == nil {
			return ca, ca.CertPEM(), nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, nil, fmt.Errorf("creating Secret %s/%s: %w", namespace, name, err)
		}
		// Another replica made it first: read its root.
	}
	return nil, nil, fmt.Errorf("the root in Secret %s/%s could not be read or made", namespace, name)
}

// parseRoot reads a root Secret: the CA, and the bundle (ca.crt without a
// trust-bundle.pem).
func parseRoot(s *corev1.Secret) (*identity.CA, []byte, error) {
	ca, err := identity.ParseCA(s.Data["ca.crt"], s.Data["ca.key"])
	if err != nil {
		return nil, nil, fmt.Errorf("the root in Secret %s/%s (keys ca.crt, ca.key): %w", s.Namespace, s.Name, err)
	}
	bundle := s.Data["trust-bundle.pem"]
	if len(bytes.TrimSpace(bundle)) == 0 {
		return ca, ca.CertPEM(), nil
	}
	if !ca.InBundle(bundle) {
		return nil, nil, fmt.Errorf("Secret %s/%s: trust-bundle.pem does not hold the root in ca.crt (%q): sidecars would not trust the certificates it signs; put the old and the new root in trust-bundle.pem",
			s.Namespace, s.Name, ca.Name())
	}
	return ca, bundle, nil
}

// WatchRoot reads the Secret name in namespace every interval until ctx
// ends, and calls apply with the root and bundle when either differs from
// what it last applied (first, from ca and bundle). A Secret that cannot be
// read, or whose root does not parse or is not in its bundle, changes
// nothing: the current root signs on, and the error is logged once for each
// content of the Secret.
func WatchRoot(ctx context.Context, kube kubernetes.Interface, namespace, name string, interval time.Duration, ca *identity.CA, bundle []byte,
	log *slog.Logger, apply func(*identity.CA, []byte)) {
	cur := rootSum(ca.CertPEM(), bundle)
	var bad [32]byte
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s, err := kube.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("reading the root's Secret failed; the current root signs on", "secret", namespace+"/"+name, "err", err)
			}
			continue
		}
		sum := sha256.Sum256(bytes.Join([][]byte{s.Data["ca.crt"], s.Data["ca.key"], s.Data["trust-bundle.pem"]}, []byte{0}))
		if sum == bad {
			continue
		}
		nca, nbundle, err := parseRoot(s)
		if err != nil {
			bad = sum
			log.Error("the root's Secret changed and is not usable; the current root signs on", "err", err)
			continue
		}
		if next := rootSum(nca.CertPEM(), nbundle); next != cur {
			cur = next
			apply(nca, nbundle)
		}
	}
}

func rootSum(cert, bundle []byte) [32]byte {
	return sha256.Sum256(bytes.Join([][]byte{cert, bundle}, []byte{0}))
}
