// Package oidcop runs a real OpenID provider for tests (zitadel's op
// package) on a loopback server, with a storage of its own kept small:
// one confidential client (ClientID, ClientSecret) allowed the
// client-credentials grant only, JWT access tokens signed RS256, and a key
// set the test can rotate. Tests only: the sidecar never links it.
package oidcop

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// The client, and the audience of its tokens unless SetTokens says
// otherwise.
const (
	ClientID     = "orders"
	ClientSecret = "s3cret"
	Audience     = "orders-api"
)

// Provider is a running provider.
type Provider struct {
	srv     *httptest.Server
	Storage *Storage
	down    atomic.Bool
	keyHit  atomic.Int64
	tokHit  atomic.Int64
	allHit  atomic.Int64
	mu      sync.Mutex
	hold    chan struct{} // non-nil: the key set's answers wait for it
}

// Start starts a provider, stopped when the test ends; st nil: a new
// Storage. Two providers on one Storage are two issuers signing with the
// same keys.
func Start(t testing.TB, st *Storage) *Provider {
	t.Helper()
	if st == nil {
		st = NewStorage(t)
	}
	o := &Provider{Storage: st}
	var handler http.Handler
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.allHit.Add(1)
		if o.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		switch r.URL.Path {
		case "/keys":
			o.keyHit.Add(1)
			o.mu.Lock()
			hold := o.hold
			o.mu.Unlock()
			if hold != nil {
				select {
				case <-hold:
				case <-r.Context().Done():
					return
				}
			}
		case "/oauth/token":
			o.tokHit.Add(1)
		}
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(o.srv.Close)
	p, err := op.NewProvider(&op.Config{CryptoKey: [32]byte{1}, AuthMethodPost: true}, st,
		op.StaticIssuer(o.srv.URL), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	handler = p
	return o
}

// Issuer is the provider's issuer, its URL.
func (o *Provider) Issuer() string { return o.srv.URL }

// TokenURL is its token endpoint.
func (o *Provider) TokenURL() string { return o.srv.URL + "/oauth/token" }

// JWKSURL is its key set.
func (o *Provider) JWKSURL() string { return o.srv.URL + "/keys" }

// SetDown makes every answer a 503 (true), or the provider's (false).
func (o *Provider) SetDown(down bool) { o.down.Store(down) }

// Hold makes the key set's answers wait until the function returned is
// called.
func (o *Provider) Hold() (release func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ch := make(chan struct{})
	o.hold = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			o.mu.Lock()
			o.hold = nil
			o.mu.Unlock()
			close(ch)
		})
	}
}

// KeyFetches counts the GETs of the key set; TokenRequests the token
// requests; Requests every request.
func (o *Provider) KeyFetches() int64    { return o.keyHit.Load() }
func (o *Provider) TokenRequests() int64 { return o.tokHit.Load() }
func (o *Provider) Requests() int64      { return o.allHit.Load() }

// Token is an access token of the client-credentials grant. (Read
// here rather than with an OAuth2 client, which refuses the expires_in of
// a token that expired when issued.)
func (o *Provider) Token(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"openid"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.TokenURL(), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(ClientID, ClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("token from %s: %v", o.TokenURL(), err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 || body.AccessToken == "" {
		t.Fatalf("token from %s: %s, %v", o.TokenURL(), resp.Status, err)
	}
	return body.AccessToken
}

// Storage is the provider's storage: what the client-credentials grant
// and the key set need; the rest answers "not supported".
type Storage struct {
	mu       sync.Mutex
	keys     []*Key // published; the last one signs
	ttl      time.Duration
	audience []string
}

// Key is a signing key of the provider.
type Key struct {
	ID      string
	Private *rsa.PrivateKey
}

func NewStorage(t testing.TB) *Storage {
	s := &Storage{ttl: 5 * time.Minute, audience: []string{Audience}}
	s.Rotate(t, false)
	return s
}

// Rotate adds a new signing key; keepOld: the old ones stay published.
func (s *Storage) Rotate(t testing.TB, keepOld bool) *Key {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	nk := &Key{ID: fmt.Sprintf("k%d-%d", len(s.keys)+1, time.Now().UnixNano()), Private: k}
	if keepOld {
		s.keys = append(s.keys, nk)
	} else {
		s.keys = []*Key{nk}
	}
	return nk
}

// Current is the key that signs.
func (s *Storage) Current() *Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[len(s.keys)-1]
}

// SetTokens sets the lifetime (negative: expired when issued) and the
// audience of the tokens issued from now on.
func (s *Storage) SetTokens(ttl time.Duration, audience ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ttl, s.audience = ttl, audience
}

type signingKey struct{ k *Key }

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.k.Private }
func (k signingKey) ID() string                                  { return k.k.ID }

type publicKey struct{ k *Key }

func (k publicKey) ID() string                         { return k.k.ID }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.k.Private.PublicKey }
func (s *Storage) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return signingKey{s.keys[len(s.keys)-1]}, nil
}
func (s *Storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}
func (s *Storage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]op.Key, len(s.keys))
	for i, k := range s.keys {
		out[i] = publicKey{k}
	}
	return out, nil
}

// The client-credentials grant.

type ccRequest struct {
	subject  string
	audience []string
	scopes   []string
}

func (r *ccRequest) GetSubject() string    { return r.subject }
func (r *ccRequest) GetAudience() []string { return r.audience }
func (r *ccRequest) GetScopes() []string   { return r.scopes }

func (s *Storage) ClientCredentials(_ context.Context, id, secret string) (op.Client, error) {
	if id != ClientID || secret != ClientSecret {
		return nil, errors.New("wrong client or secret")
	}
	return client{}, nil
}
func (s *Storage) ClientCredentialsTokenRequest(_ context.Context, id string, scopes []string) (op.TokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &ccRequest{subject: id, audience: s.audience, scopes: scopes}, nil
}
func (s *Storage) CreateAccessToken(context.Context, op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("t%d", time.Now().UnixNano()), time.Now().Add(s.ttl), nil
}
func (s *Storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != ClientID {
		return nil, errors.New("no such client")
	}
	return client{}, nil
}
func (s *Storage) AuthorizeClientIDSecret(ctx context.Context, id, secret string) error {
	_, err := s.ClientCredentials(ctx, id, secret)
	return err
}
func (s *Storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}
func (s *Storage) Health(context.Context) error { return nil }

// What the tests do not use.

var errNotSupported = errors.New("not supported by the test provider")

func (s *Storage) CreateAuthRequest(context.Context, *oidc.AuthRequest, string) (op.AuthRequest, error) {
	return nil, errNotSupported
}
func (s *Storage) AuthRequestByID(context.Context, string) (op.AuthRequest, error) {
	return nil, errNotSupported
}
func (s *Storage) AuthRequestByCode(context.Context, string) (op.AuthRequest, error) {
	return nil, errNotSupported
}
func (s *Storage) SaveAuthCode(context.Context, string, string) error { return errNotSupported }
func (s *Storage) DeleteAuthRequest(context.Context, string) error    { return errNotSupported }
func (s *Storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errNotSupported
}
func (s *Storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, errNotSupported
}
func (s *Storage) TerminateSession(context.Context, string, string) error { return errNotSupported }
func (s *Storage) RevokeToken(context.Context, string, string, string) *oidc.Error {
	return oidc.ErrUnsupportedGrantType()
}
func (s *Storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}
func (s *Storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}
func (s *Storage) SetUserinfoFromToken(context.Context, *oidc.UserInfo, string, string, string) error {
	return errNotSupported
}
func (s *Storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errNotSupported
}
func (s *Storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errNotSupported
}
func (s *Storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errNotSupported
}

// client is the one client: confidential, client-credentials only, JWT
// access tokens.
type client struct{}

func (client) GetID() string                        { return ClientID }
func (client) RedirectURIs() []string               { return nil }
func (client) PostLogoutRedirectURIs() []string     { return nil }
func (client) ApplicationType() op.ApplicationType  { return op.ApplicationTypeWeb }
func (client) AuthMethod() oidc.AuthMethod          { return oidc.AuthMethodBasic }
func (client) ResponseTypes() []oidc.ResponseType   { return nil }
func (client) GrantTypes() []oidc.GrantType         { return []oidc.GrantType{oidc.GrantTypeClientCredentials} }
func (client) LoginURL(string) string               { return "" }
func (client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeJWT }
func (client) IDTokenLifetime() time.Duration       { return time.Hour }
func (client) DevMode() bool                        { return true }
func (client) IsScopeAllowed(string) bool           { return true }
func (client) IDTokenUserinfoClaimsAssertion() bool { return false }
func (client) ClockSkew() time.Duration             { return 0 }
func (client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

var (
	_ op.Storage                  = (*Storage)(nil)
	_ op.ClientCredentialsStorage = (*Storage)(nil)
	_ op.Client                   = client{}
)
