package middleware

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/apierr"
)

// TypeBearer is Dapr's bearer token middleware.
const TypeBearer = "middleware.http.bearer"

// Error codes of the token middleware (ours, in Dapr's style: daprd
// answers a bad token with a bare 401).
const (
	// CodeUnauthenticated: no bearer token, or one that does not verify.
	CodeUnauthenticated = "ERR_UNAUTHENTICATED"
	// CodeAuthUnavailable: the sidecar could not reach the identity
	// provider (its discovery document, its keys, its token endpoint).
	CodeAuthUnavailable = "ERR_AUTH_PROVIDER_UNAVAILABLE"
)

// Headers the bearer middleware sets on a call whose token verified; it
// removes every incoming header of the prefix first, and the internal
// port removes them from every call arriving from another sidecar, so the
// app reads only what its own sidecar verified.
const (
	BearerHeaderPrefix = "Dapr-Bearer-"
	// BearerClaimsHeader holds the token's verified payload, JSON in
	// base64url without padding.
	BearerClaimsHeader = "Dapr-Bearer-Claims"
	// BearerSubjectHeader holds its sub claim.
	BearerSubjectHeader = "Dapr-Bearer-Subject"
)

// Defaults of the bearer middleware.
const (
	// DefaultClockSkew is daprd's allowance for clocks apart: a token is
	// good until its exp plus this, from its nbf minus this.
	DefaultClockSkew = 5 * time.Minute
	// MaxClockSkew bounds allowedClockSkew.
	MaxClockSkew = 10 * time.Minute
	// DefaultFetchTimeout bounds one fetch of the discovery document, the
	// keys or a token.
	DefaultFetchTimeout = 10 * time.Second
	// DefaultMinRefreshInterval is the least time between two fetches of
	// the keys: a flood of tokens naming unknown keys costs the provider
	// one fetch in this time, whatever their number.
	DefaultMinRefreshInterval = 30 * time.Second
	// DefaultRetryInterval is the wait after a failed fetch before the
	// next try; the calls in between are answered at once.
	DefaultRetryInterval = 5 * time.Second
	// DefaultKeysMaxAge is how long fetched keys are used before they are
	// fetched again (in the background; the old ones serve meanwhile).
	DefaultKeysMaxAge = time.Hour
)

// BearerConfig is a middleware.http.bearer Component's metadata, and the
// bounds of its fetches (not metadata; zero: the defaults above).
type BearerConfig struct {
	// Issuer is the tokens' iss, exactly (Dapr's issuer, alias issuerURL).
	Issuer string
	// Audience must be one of the tokens' aud (audience, alias clientID).
	Audience string
	// JWKSURL is where the keys are (jwksURL); empty: the jwks_uri of
	// the issuer's /.well-known/openid-configuration.
	JWKSURL string
	// ClockSkew is allowedClockSkew (ours; default 5m, daprd's, at most
	// 10m).
	ClockSkew time.Duration

	Fetch
	MinRefreshInterval time.Duration
	KeysMaxAge         time.Duration
}

// Fetch bounds the fetches of a middleware from its provider (not
// metadata; zero: the defaults above).
type Fetch struct {
	FetchTimeout  time.Duration
	RetryInterval time.Duration
	// Client makes the fetches (nil: one with FetchTimeout).
	Client *http.Client
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// withDefaults fills the zero fields of f.
func (f Fetch) withDefaults() Fetch {
	if f.FetchTimeout <= 0 {
		f.FetchTimeout = DefaultFetchTimeout
	}
	if f.RetryInterval <= 0 {
		f.RetryInterval = DefaultRetryInterval
	}
	if f.Client == nil {
		f.Client = &http.Client{Timeout: f.FetchTimeout}
	}
	if f.Now == nil {
		f.Now = time.Now
	}
	return f
}

var bearerFields = []string{"issuer", "audience", "jwksURL", "allowedClockSkew"}

// ParseBearer reads a middleware.http.bearer Component's metadata.
func ParseBearer(md map[string]string) (BearerConfig, error) {
	c := BearerConfig{ClockSkew: DefaultClockSkew}
	for k, v := range md {
		v = strings.TrimSpace(v)
		switch {
		case strings.EqualFold(k, "issuer"), strings.EqualFold(k, "issuerURL"):
			c.Issuer = v
		case strings.EqualFold(k, "audience"), strings.EqualFold(k, "clientID"):
			c.Audience = v
		case strings.EqualFold(k, "jwksURL"):
			c.JWKSURL = v
		case strings.EqualFold(k, "allowedClockSkew"):
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > MaxClockSkew {
				return c, fmt.Errorf("metadata allowedClockSkew %q is not a duration from 0s to %s (for example \"30s\")", v, MaxClockSkew)
			}
			c.ClockSkew = d
		default:
			return c, fmt.Errorf("metadata field %q is not read by %s; it reads %s", k, TypeBearer, strings.Join(bearerFields, ", "))
		}
	}
	if c.Issuer == "" {
		return c, errors.New("metadata issuer is required: the URL the tokens name as their iss (for example \"https://login.example.com/realms/apps\")")
	}
	if err := checkURL("issuer", c.Issuer); err != nil {
		return c, err
	}
	if c.Audience == "" {
		return c, errors.New("metadata audience is required: the aud the tokens must carry (often the API's client id)")
	}
	if c.JWKSURL != "" {
		if err := checkURL("jwksURL", c.JWKSURL); err != nil {
			return c, err
		}
	}
	return c, nil
}

// checkURL checks that v, the metadata field name, is an absolute http or
// https URL.
func checkURL(name, v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("metadata %s %q is not an absolute http or https URL", name, v)
	}
	return nil
}

// withDefaults fills the zero bounds of c.
func (c BearerConfig) withDefaults() BearerConfig {
	c.Fetch = c.Fetch.withDefaults()
	if c.MinRefreshInterval <= 0 {
		c.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if c.KeysMaxAge <= 0 {
		c.KeysMaxAge = DefaultKeysMaxAge
	}
	return c
}

// bearerAlgorithms are the signature algorithms a token may use: public
// key ones only. "none" and HMAC (HS256, ...) are refused before any key
// is looked at, so a token signed with the text of a public key as an
// HMAC secret never verifies.
var bearerAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// Bearer lets through the calls with a JWT in their Authorization header
// (Bearer scheme) signed by a key of the issuer, of the issuer and the
// audience configured, within its validity give or take the clock skew.
// Other calls are refused: 401 with a WWW-Authenticate challenge
// (RFC 6750) on HTTP, Unauthenticated on gRPC. While the issuer's keys
// cannot be had, calls are refused with 503 (Unavailable on gRPC) and the
// fetch is tried again after a short wait: the middleware is built without
// reaching the issuer, so a provider down never stops the sidecar.
type Bearer struct {
	name string
	cfg  BearerConfig
	keys *keyCache
}

// NewBearer returns the bearer middleware of the Component name.
func NewBearer(name string, c BearerConfig) *Bearer {
	c = c.withDefaults()
	return &Bearer{name: name, cfg: c, keys: newKeyCache(c)}
}

// Handle verifies the call's token; a verified call carries its claims in
// the Dapr-Bearer-* headers.
func (b *Bearer) Handle(ctx context.Context, c *Call) error {
	if c.Header == nil {
		c.Header = http.Header{}
	}
	StripBearerHeaders(c.Header)
	raw, ok := bearerToken(c.Header)
	if !ok {
		return b.unauthenticated("", "no bearer token: send the header \"Authorization: Bearer <JWT>\"")
	}
	tok, err := jwt.ParseSigned(raw, bearerAlgorithms)
	if err != nil {
		return b.unauthenticated("invalid_token", "the bearer token is not a JWT signed with one of "+algNames()+": "+err.Error())
	}
	h := tok.Headers[0]
	keys, err := b.keys.get(ctx, h.KeyID)
	if err != nil {
		return err
	}
	payload, err := verify(tok, keys, h)
	if err != nil {
		return b.unauthenticated("invalid_token", err.Error())
	}
	var claims jwt.Claims
	if err := json.Unmarshal(payload, &claims); err != nil {
		return b.unauthenticated("invalid_token", "the token's claims do not read: "+err.Error())
	}
	if claims.Expiry == nil {
		return b.unauthenticated("invalid_token", "the token has no exp claim")
	}
	err = claims.ValidateWithLeeway(jwt.Expected{Issuer: b.cfg.Issuer, AnyAudience: jwt.Audience{b.cfg.Audience}, Time: b.cfg.Now()}, b.cfg.ClockSkew)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return b.unauthenticated("invalid_token", fmt.Sprintf("the token expired at %s", claims.Expiry.Time().UTC().Format(time.RFC3339)))
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return b.unauthenticated("invalid_token", fmt.Sprintf("the token's issuer %q is not %q", claims.Issuer, b.cfg.Issuer))
	case errors.Is(err, jwt.ErrInvalidAudience):
		return b.unauthenticated("invalid_token", fmt.Sprintf("the token's audience %q does not hold %q", []string(claims.Audience), b.cfg.Audience))
	case err != nil:
		return b.unauthenticated("invalid_token", "the token is not valid now: "+err.Error())
	}
	c.Header.Set(BearerClaimsHeader, base64.RawURLEncoding.EncodeToString(payload))
	if printableASCII(claims.Subject) {
		c.Header.Set(BearerSubjectHeader, claims.Subject)
	}
	return nil
}

// verify checks tok's signature with the key it names (or, when it names
// none, with each key), and returns its payload.
func verify(tok *jwt.JSONWebToken, keys []jose.JSONWebKey, h jose.Header) ([]byte, error) {
	var lastErr error
	tried := 0
	for _, k := range keys {
		if h.KeyID != "" && k.KeyID != h.KeyID {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			lastErr = fmt.Errorf("the token is signed %s, and its key %q is for %s", h.Algorithm, k.KeyID, k.Algorithm)
			continue
		}
		tried++
		var payload json.RawMessage
		if err := tok.Claims(k.Key, &payload); err != nil {
			lastErr = fmt.Errorf("the token's signature does not verify with key %q: %v", k.KeyID, err)
			continue
		}
		return payload, nil
	}
	if lastErr != nil {
		return nil, lastErr
	}
	if h.KeyID != "" {
		return nil, fmt.Errorf("the token's key %q is not one of the issuer's", h.KeyID)
	}
	return nil, errors.New("the issuer has no key to verify the token with")
}

// bearerToken is the token of the header "Authorization: Bearer <token>".
func bearerToken(h http.Header) (string, bool) {
	v := h.Get("Authorization")
	scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// StripBearerHeaders removes the Dapr-Bearer-* headers from h.
func StripBearerHeaders(h http.Header) {
	for k := range h {
		if len(k) >= len(BearerHeaderPrefix) && strings.EqualFold(k[:len(BearerHeaderPrefix)], BearerHeaderPrefix) {
			delete(h, k)
		}
	}
}

func algNames() string {
	names := make([]string, len(bearerAlgorithms))
	for i, a := range bearerAlgorithms {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

func printableASCII(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// unauthenticated is a 401 refusal, with its RFC 6750 challenge; code is
// the challenge's error ("": none, for a call without a token).
func (b *Bearer) unauthenticated(code, why string) error {
	e := apierr.New(CodeUnauthenticated, http.StatusUnauthorized, codes.Unauthenticated, "%s: %s", b.name, why)
	ch := fmt.Sprintf("Bearer realm=%q", challengeText(b.cfg.Audience))
	if code != "" {
		ch += fmt.Sprintf(", error=%q, error_description=%q", code, challengeText(why))
	}
	return &Challenge{Err: e, Header: http.Header{"Www-Authenticate": {ch}}}
}

// challengeText keeps what an RFC 6750 quoted value may hold: printable
// ASCII but '"' and '\'.
func challengeText(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(out) < 200; i++ {
		if c := s[i]; c >= 0x20 && c <= 0x7e && c != '"' && c != '\\' {
			out = append(out, c)
		}
	}
	return string(out)
}

// Challenge is a refusal whose HTTP answer carries headers of its own (a
// WWW-Authenticate challenge).
type Challenge struct {
	Err    *apierr.Error
	Header http.Header
}

func (c *Challenge) Error() string { return c.Err.Message }

// Unwrap gives the API error.
func (c *Challenge) Unwrap() error { return c.Err }

// ResponseHeader are the headers of the HTTP answer.
func (c *Challenge) ResponseHeader() http.Header { return c.Header }

var _ Middleware = (*Bearer)(nil)
