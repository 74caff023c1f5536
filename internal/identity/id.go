// Package identity is the sidecars' workload identity: SPIFFE IDs
// (spiffe://<trust-domain>/ns/<namespace>/<app-id>) in X.509 certificates
// issued by a certificate authority, and the mutual TLS that every hop
// between sidecars runs on.
//
//   - A CA signs a sidecar's certificate request for one ID (ca.go). In
//     standalone mode it is a local CA made once in the registry folder,
//     readable only by its user: a process that cannot read the folder can
//     get no certificate, so it can neither join nor pose as an app.
//   - A Source (source.go) holds a sidecar's key, made in memory and never
//     written anywhere, and its current certificate, which it renews well
//     before expiry without dropping a call; and the trust bundle, a PEM file
//     of one or more roots that it reloads when the file changes, so a root
//     can be rotated with overlapping roots and no restart.
//   - Its TLS configurations require TLS 1.3 and a certificate on both sides;
//     a client checks that the server's ID is the app it meant to call, and a
//     server takes the caller's ID from the verified certificate only.
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
