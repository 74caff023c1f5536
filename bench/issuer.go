package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// issuer is the -middleware profile's OpenID provider: a loopback server
// of the harness's with what middleware.http.bearer and
// middleware.http.oauth2clientcredentials read of one (the discovery
// document, the key set, a client-credentials token endpoint), its tokens
// RS256 JWTs good for an hour. The bench measures the sidecar's work on
// each call, which a token that verifies exercises in full.
type issuer struct {
	srv    *httptest.Server
	signer jose.Signer
	keys   jose.JSONWebKeySet
}

const (
	issuerAudience = "bench-app"
	issuerClient   = "bench-client"
	issuerSecret   = "bench-secret"
)

var (
	benchIssuerOnce sync.Once
	benchIssuer     *issuer
	benchIssuerErr  error
)

// theIssuer starts the run's issuer on first use; it serves until the
// process ends.
func theIssuer() (*issuer, error) {
	benchIssuerOnce.Do(func() { benchIssuer, benchIssuerErr = newIssuer() })
	return benchIssuer, benchIssuerErr
}

func newIssuer() (*issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "bench"))
	if err != nil {
		return nil, err
	}
	is := &issuer{signer: signer, keys: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &key.PublicKey, KeyID: "bench", Algorithm: string(jose.RS256), Use: "sig"}}}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/keys", "token_endpoint": is.srv.URL + "/token"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, is.keys) })
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if !ok {
			_ = r.ParseForm()
			id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		if id != issuerClient || secret != issuerSecret {
			w.WriteHeader(http.StatusUnauthorized)
			writeJSON(w, map[string]string{"error": "invalid_client"})
			return
		}
		tok, err := is.token()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
	})
	is.srv = httptest.NewServer(mux)
	return is, nil
}

// token is a JWT for issuerAudience, good for an hour.
func (is *issuer) token() (string, error) {
	now := time.Now()
	return jwt.Signed(is.signer).Claims(jwt.Claims{
		Issuer: is.srv.URL, Subject: issuerClient, Audience: jwt.Audience{issuerAudience},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour)),
	}).Serialize()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// middlewareYAML is a Component named mw of type typ with the metadata
// pairs md.
func middlewareYAML(typ string, md ...string) []byte {
	b := "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: mw\nspec:\n  type: " + typ + "\n  version: v1\n  metadata:\n"
	for i := 0; i+1 < len(md); i += 2 {
		b += fmt.Sprintf("  - name: %s\n    value: %q\n", md[i], md[i+1])
	}
	return []byte(b)
}
