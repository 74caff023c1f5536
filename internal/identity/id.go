// Package identity is the sidecars' workload identity: SPIFFE IDs
// (spiffe://<trust-domain>/ns/<namespace>/<app-id>) in X.509 certificates
// issued by a certificate authority, and the mutual TLS that every hop
// between sidecars runs on.
//
//   - A CA signs a sidecar's certificate request for one ID (ca.go), never
//     for longer than its own root lives. In standalone mode it is a local
//     CA in the registry folder (local.go), readable only by its user: a
//     process that cannot read the folder can get no certificate, so it can
//     neither join nor pose as an app.
//   - A Source (source.go) holds a sidecar's key, made in memory and never
//     written anywhere, and its current certificate, which it renews well
//     before expiry without dropping a call; and the trust bundle, a PEM file
//     of one or more roots that it reloads when the file changes, so a root
//     can be rotated with overlapping roots and no restart.
//   - Its TLS configurations require TLS 1.3 and a certificate on both sides;
//     a client checks that the server's ID is the app it meant to call, and a
//     server takes the caller's ID from the verified certificate only.
//
// The local CA is a folder, <registry>/ca (mode 0700, files 0600), that the
// sidecars of one user share with no daemon:
//
//	ca.crt, ca.key      the root that signs
//	trust-bundle.pem    every root sidecars trust: ca.crt, the next root
//	                    during a rotation, the previous one until it expires
//	next.crt, next.key  during a rotation, the next root, already trusted
//	.lock               held by the sidecar that reads or changes the folder
//
// Sidecars read it when they start and whenever they ask for a certificate
// (at two thirds of its life), under the lock, so that sidecars starting
// together make one CA; they re-read trust-bundle.pem every second and trust
// every root in it. A root lives a year (DefaultRootTTL). When a third of its
// life is left, the next sidecar to read the folder makes the next root and
// adds it to trust-bundle.pem; once that has been there for the overlap (an
// hour, a twelfth of the root's life for shorter ones) every running sidecar
// trusts it, and the next sidecar to read the folder makes it ca.crt/ca.key,
// so that each sidecar moves to it at its next renewal. The previous root
// stays in the bundle until it expires, and with it every certificate it
// signed; then it is dropped. A root that expired with no sidecar running
// is replaced at once: nothing it signed is valid any more.
//
// Files are replaced by rename, so a reader sees the old or the new content,
// never a mix. A crash while a root is made leaves its key without its
// certificate, which never signed and is made again; a crash while the next
// root takes over leaves ca.key equal to next.key, which is finished; a
// next root that is not in trust-bundle.pem was never trusted and is made
// again. A certificate without its key (ca.crt without ca.key, next.crt
// without next.key), or a ca.crt that trust-bundle.pem does not hold, may
// be what running sidecars trust: it is refused, naming the file, and never
// replaced. A folder from before trust-bundle.pem gets one holding ca.crt.
package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/tandem-run/tandem/pkg/resolver"
)

// DefaultTrustDomain is the trust domain when none is configured, as Dapr's.
const DefaultTrustDomain = "public"

// DefaultNamespace is the namespace of standalone sidecars.
const DefaultNamespace = "default"

// ID is a sidecar's identity.
type ID struct {
	TrustDomain string
	Namespace   string
	AppID       string
}

// String is the SPIFFE ID: spiffe://<trust-domain>/ns/<namespace>/<app-id>.
func (id ID) String() string { return id.URL().String() }

// URL is the SPIFFE ID as a URL, for a certificate's URI SAN.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/" + id.AppID}
}

// Validate reports whether every part of id is well formed.
func (id ID) Validate() error {
	if id.TrustDomain == "" || strings.ContainsAny(id.TrustDomain, "/:@ ") {
		return fmt.Errorf("trust domain %q is not valid: a DNS-like name such as %q", id.TrustDomain, DefaultTrustDomain)
	}
	if err := resolver.ValidateID(id.Namespace); err != nil {
		return fmt.Errorf("namespace %q: %w", id.Namespace, err)
	}
	if err := resolver.ValidateID(id.AppID); err != nil {
		return fmt.Errorf("app id %q: %w", id.AppID, err)
	}
	return nil
}

// Parse reads a SPIFFE ID of the form spiffe://<td>/ns/<namespace>/<app-id>.
func Parse(s string) (ID, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "spiffe" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return ID{}, fmt.Errorf("%q is not a SPIFFE ID (spiffe://<trust-domain>/ns/<namespace>/<app-id>)", s)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 3 || parts[0] != "ns" {
		return ID{}, fmt.Errorf("SPIFFE ID %q is not of the form spiffe://<trust-domain>/ns/<namespace>/<app-id>", s)
	}
	id := ID{TrustDomain: u.Host, Namespace: parts[1], AppID: parts[2]}
	if err := id.Validate(); err != nil {
		return ID{}, fmt.Errorf("SPIFFE ID %q: %w", s, err)
	}
	return id, nil
}

// FromCert is the ID of a certificate: its one spiffe:// URI SAN.
func FromCert(c *x509.Certificate) (ID, error) {
	var found []*url.URL
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			found = append(found, u)
		}
	}
	if len(found) != 1 {
		return ID{}, errors.New("the certificate does not carry exactly one SPIFFE ID")
	}
	return Parse(found[0].String())
}
