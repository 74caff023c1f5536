package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/apierr"
)

// TypeOAuth2ClientCredentials is Dapr's client-credentials middleware.
const TypeOAuth2ClientCredentials = "middleware.http.oauth2clientcredentials"

// TypeOAuth2 is Dapr's authorization-code middleware, which this sidecar
// does not build (docs/middleware.md says why).
const TypeOAuth2 = "middleware.http.oauth2"

// OAuth2ClientCredentialsConfig is a
// middleware.http.oauth2clientcredentials Component's metadata, and the
// bounds of its fetches (not metadata; zero: the bearer middleware's
// defaults).
type OAuth2ClientCredentialsConfig struct {
	ClientID, ClientSecret string
	Scopes                 []string
	TokenURL               string
	// HeaderName is the header the token goes in ("Authorization":
	// "Bearer <token>").
	HeaderName string
	// EndpointParams are more parameters of the token request
	// (endpointParamsQuery, a URL query).
	EndpointParams url.Values
	// AuthStyle is how the client's credentials are sent: 0 either way
	// (found out, then kept), 1 in the form, 2 in HTTP Basic.
	AuthStyle oauth2.AuthStyle
	// PathFilter, when set, limits the middleware to the calls whose path
	// (gRPC: full method) it matches.
	PathFilter *regexp.Regexp

	Fetch
}

var oauth2CCFields = []string{"clientID", "clientSecret", "scopes", "tokenURL", "headerName", "endpointParamsQuery", "authStyle", "pathFilter"}

// ParseOAuth2ClientCredentials reads a
// middleware.http.oauth2clientcredentials Component's metadata.
func ParseOAuth2ClientCredentials(md map[string]string) (OAuth2ClientCredentialsConfig, error) {
	var c OAuth2ClientCredentialsConfig
	for k, v := range md {
		switch {
		case strings.EqualFold(k, "clientID"):
			c.ClientID = strings.TrimSpace(v)
		case strings.EqualFold(k, "clientSecret"):
			c.ClientSecret = v
		case strings.EqualFold(k, "scopes"):
			c.Scopes = strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
		case strings.EqualFold(k, "tokenURL"):
			c.TokenURL = strings.TrimSpace(v)
		case strings.EqualFold(k, "headerName"):
			c.HeaderName = strings.TrimSpace(v)
		case strings.EqualFold(k, "endpointParamsQuery"):
			q, err := url.ParseQuery(strings.TrimSpace(v))
			if err != nil {
				return c, fmt.Errorf("metadata endpointParamsQuery %q is not a URL query (for example \"resource=api&audience=orders\"): %v", v, err)
			}
			c.EndpointParams = q
		case strings.EqualFold(k, "authStyle"):
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 || n > 2 {
				return c, fmt.Errorf("metadata authStyle %q is not 0 (found out), 1 (in the form) or 2 (HTTP Basic)", v)
			}
			c.AuthStyle = oauth2.AuthStyle(n)
		case strings.EqualFold(k, "pathFilter"):
			if strings.TrimSpace(v) == "" {
				continue
			}
			rx, err := regexp.Compile(v)
			if err != nil {
				return c, fmt.Errorf("metadata pathFilter %q is not a regular expression: %v", v, err)
			}
			c.PathFilter = rx
		default:
			return c, fmt.Errorf("metadata field %q is not read by %s; it reads %s", k, TypeOAuth2ClientCredentials, strings.Join(oauth2CCFields, ", "))
		}
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"clientID", c.ClientID}, {"clientSecret", c.ClientSecret}, {"tokenURL", c.TokenURL}, {"headerName", c.HeaderName}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	switch len(missing) {
	case 0:
	case 1:
		return c, fmt.Errorf("metadata %s is required", missing[0])
	default:
		return c, fmt.Errorf("metadata %s are required", strings.Join(missing, ", "))
	}
	if err := checkURL("tokenURL", c.TokenURL); err != nil {
		return c, err
	}
	if !httpguts.ValidHeaderFieldName(c.HeaderName) {
		return c, fmt.Errorf("metadata headerName %q is not a header name (for example \"Authorization\")", c.HeaderName)
	}
	return c, nil
}

// OAuth2ClientCredentials puts a token of the client in a header of every
// call (it replaces one the caller sent): a token fetched from the token
// endpoint with the client-credentials grant, kept until shortly before it
// expires, and fetched again in the background before then, so that no
// call waits for a renewal. While no token can be had the calls are
// refused with 503 (Unavailable on gRPC), and the fetch is tried again
// after a short wait; the middleware is built without reaching the
// endpoint.
type OAuth2ClientCredentials struct {
	name string
	cfg  OAuth2ClientCredentialsConfig
	conf *clientcredentials.Config

	mu       sync.Mutex
	header   string    // the header's value: "<type> <token>"
	expiry   time.Time // of the token; zero: none held
	renewAt  time.Time // when to fetch the next one
	nextTry  time.Time
	lastErr  error
	inflight chan struct{}
	fetches  int
}

// NewOAuth2ClientCredentials returns the middleware of the Component name.
func NewOAuth2ClientCredentials(name string, c OAuth2ClientCredentialsConfig) *OAuth2ClientCredentials {
	c.Fetch = c.Fetch.withDefaults()
	return &OAuth2ClientCredentials{name: name, cfg: c, conf: &clientcredentials.Config{
		ClientID: c.ClientID, ClientSecret: c.ClientSecret, TokenURL: c.TokenURL,
		Scopes: c.Scopes, EndpointParams: c.EndpointParams, AuthStyle: c.AuthStyle,
	}}
}

// Handle sets the token header of the call.
func (o *OAuth2ClientCredentials) Handle(ctx context.Context, c *Call) error {
	if o.cfg.PathFilter != nil && !o.cfg.PathFilter.MatchString(c.Method) {
		return nil
	}
	v, err := o.token(ctx)
	if err != nil {
		return err
	}
	if c.Header == nil {
		c.Header = http.Header{}
	}
	c.Header.Set(o.cfg.HeaderName, v)
	return nil
}

// token is the header's value: the token held while it is good, else a
// new one.
func (o *OAuth2ClientCredentials) token(ctx context.Context) (string, error) {
	for waited := false; ; waited = true {
		now := o.cfg.Now()
		o.mu.Lock()
		if !o.expiry.IsZero() && now.Before(o.expiry) {
			v := o.header
			if !now.Before(o.renewAt) && o.inflight == nil && !now.Before(o.nextTry) {
				o.start(now)
			}
			o.mu.Unlock()
			return v, nil
		}
		wait := o.inflight
		if wait == nil && !waited && !now.Before(o.nextTry) {
			wait = o.start(now)
		}
		if wait == nil {
			why := "not fetched yet"
			if o.lastErr != nil {
				why = o.lastErr.Error()
			}
			d := max(o.nextTry.Sub(now), time.Millisecond)
			o.mu.Unlock()
			return "", &Refusal{Wait: d, Err: apierr.New(CodeAuthUnavailable, http.StatusServiceUnavailable, codes.Unavailable,
				"%s: no token could be had from %s (%s); tried again in %s", o.name, o.cfg.TokenURL, why, d.Round(time.Millisecond))}
		}
		o.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return "", apierr.New(CodeAuthUnavailable, http.StatusServiceUnavailable, codes.Unavailable,
				"%s: a token is being fetched from %s, and the call ended first: %v", o.name, o.cfg.TokenURL, ctx.Err())
		}
	}
}

// start starts a fetch; o.mu is held.
func (o *OAuth2ClientCredentials) start(now time.Time) chan struct{} {
	done := make(chan struct{})
	o.inflight = done
	o.nextTry = now.Add(o.cfg.RetryInterval)
	o.fetches++
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), o.cfg.FetchTimeout)
		defer cancel()
		ctx = context.WithValue(ctx, oauth2.HTTPClient, o.cfg.Client)
		tok, err := o.conf.Token(ctx)
		if err == nil && tok.AccessToken == "" {
			err = errors.New("the answer holds no access_token")
		}
		now := o.cfg.Now()
		o.mu.Lock()
		defer o.mu.Unlock()
		o.inflight = nil
		o.lastErr = err
		if err != nil {
			o.nextTry = now.Add(o.cfg.RetryInterval)
		} else {
			o.header = tok.Type() + " " + tok.AccessToken
			exp := tok.Expiry // the library's clock: now plus expires_in
			if !exp.IsZero() {
				exp = now.Add(time.Until(exp))
			}
			o.expiry, o.renewAt = tokenTimes(now, exp)
			o.nextTry = now
		}
		close(done)
	}()
	return done
}

// tokenTimes are when a token fetched at now and expiring at exp is
// dropped, and when the next one is fetched: a token is dropped 10 s
// before it expires (a call in flight may still need it), and renewed
// once three quarters of its life are over. A token without expiry is
// kept for an hour.
func tokenTimes(now, exp time.Time) (expiry, renew time.Time) {
	if exp.IsZero() {
		exp = now.Add(time.Hour)
	}
	life := exp.Sub(now)
	expiry = exp.Add(-min(10*time.Second, life/4))
	renew = now.Add(life * 3 / 4)
	return expiry, renew
}

var _ Middleware = (*OAuth2ClientCredentials)(nil)
