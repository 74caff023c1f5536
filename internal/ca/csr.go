package ca

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/tandem-run/tandem/internal/identity"
)

// minRSABits is the smallest RSA key the CA signs for.
const minRSABits = 2048

// checkCSR checks the certificate request (DER) a sidecar of id sends: it
// parses, its signature verifies (the sender holds the key), its key is one
// the CA signs for, and the only SPIFFE ID it names, if any, is id's. The
// certificate names id whatever the request says; a request naming another
// identity is refused rather than quietly issued for id, so that a sidecar
// set up with another trust domain, namespace or app id learns so here.
func checkCSR(der []byte, id identity.ID) error {
	if len(der) == 0 {
		return errors.New("no certificate request: send csr, a PKCS #10 request in PEM or base64 DER")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return fmt.Errorf("the certificate request (csr) is not a PKCS #10 request in PEM or base64 DER: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return fmt.Errorf("the certificate request's signature does not verify with its own key: %w", err)
	}
	if err := checkKey(csr.PublicKey); err != nil {
		return err
	}
	for _, u := range csr.URIs {
		if u.String() != id.String() {
			return fmt.Errorf("the certificate request names %q, and the request asks for %q: a request names no URI or only the SPIFFE ID asked for", u, id)
		}
	}
	return nil
}

// checkKey accepts ECDSA on P-256, P-384 or P-521, Ed25519, and RSA of
// minRSABits or more.
func checkKey(pub any) error {
	const accepted = "accepted: ECDSA on P-256, P-384 or P-521, Ed25519, or RSA of 2048 bits or more"
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("the certificate request's key is ECDSA on curve %s (%s)", k.Curve.Params().Name, accepted)
	case ed25519.PublicKey:
		return nil
	case *rsa.PublicKey:
		if k.N.BitLen() >= minRSABits {
			return nil
		}
		return fmt.Errorf("the certificate request's key is RSA of %d bits (%s)", k.N.BitLen(), accepted)
	}
	return fmt.Errorf("the certificate request's key is a %T (%s)", pub, accepted)
}
