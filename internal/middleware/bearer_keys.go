package middleware

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/apierr"
)

// maxDocumentBytes bounds a discovery document or a key set.
const maxDocumentBytes = 1 << 20

// maxJWKSKeys bounds the keys of a key set that are kept.
const maxJWKSKeys = 100

// keyCache holds an issuer's public keys, fetched when first needed,
// again when a token names a key it does not hold, and in the background
// once they are KeysMaxAge old. Fetches are at least MinRefreshInterval
// apart after a success and RetryInterval after a failure; one fetch at a
// time, which the calls that need it wait for (as long as their context
// lets them). A fetch runs on its own context, bounded by FetchTimeout: a
// call that gives up does not cancel it for the others.
type keyCache struct {
	cfg BearerConfig

	mu       sync.Mutex
	jwksURL  string // discovered, or cfg.JWKSURL
	keys     []jose.JSONWebKey
	fetched  time.Time     // when keys were fetched; zero: never
	nextTry  time.Time     // no fetch before then
	lastErr  error         // of the last fetch, nil if it succeeded
	inflight chan struct{} // closed when the fetch under way ends; nil: none
	fetches  int           // fetches of the key set started, for tests
}

func newKeyCache(c BearerConfig) *keyCache {
	return &keyCache{cfg: c, jwksURL: c.JWKSURL}
}

// get returns the keys to verify a token naming kid with: fetched again
// first when kid is not among them and the bounds allow. The error is a
// 503 refusal when no keys could ever be had.
func (k *keyCache) get(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	for waited := false; ; waited = true {
		now := k.cfg.Now()
		k.mu.Lock()
		have := !k.fetched.IsZero()
		if have && (kid == "" || hasKey(k.keys, kid)) {
			keys := k.keys
			if now.Sub(k.fetched) >= k.cfg.KeysMaxAge && k.inflight == nil && !now.Before(k.nextTry) {
				k.start(now) // in the background: the keys in hand serve meanwhile
			}
			k.mu.Unlock()
			return keys, nil
		}
		wait := k.inflight
		if wait == nil && !waited && !now.Before(k.nextTry) {
			wait = k.start(now)
		}
		if wait == nil {
			keys, err := k.keys, k.unavailable(have, now)
			k.mu.Unlock()
			return keys, err
		}
		k.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, apierr.New(CodeAuthUnavailable, http.StatusServiceUnavailable, codes.Unavailable,
				"the keys of issuer %s are being fetched, and the call ended first: %v", k.cfg.Issuer, ctx.Err())
		}
	}
}

// unavailable is nil when keys are in hand (a token naming an unknown key
// is then refused by the caller, 401), else the 503 of the last failure.
// k.mu is held.
func (k *keyCache) unavailable(have bool, now time.Time) error {
	if have {
		return nil
	}
	why := "not fetched yet"
	if k.lastErr != nil {
		why = k.lastErr.Error()
	}
	return &Refusal{Wait: max(k.nextTry.Sub(now), time.Millisecond), Err: apierr.New(CodeAuthUnavailable, http.StatusServiceUnavailable, codes.Unavailable,
		"the keys of issuer %s could not be had (%s); tried again in %s", k.cfg.Issuer, why, max(k.nextTry.Sub(now), 0).Round(time.Millisecond))}
}

// start starts a fetch and returns the channel closed when it ends. k.mu
// is held.
func (k *keyCache) start(now time.Time) chan struct{} {
	done := make(chan struct{})
	k.inflight = done
	k.nextTry = now.Add(k.cfg.RetryInterval) // until it ends
	k.fetches++
	jwksURL := k.jwksURL
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), k.cfg.FetchTimeout)
		defer cancel()
		discovered, keys, err := k.fetch(ctx, jwksURL)
		now := k.cfg.Now()
		k.mu.Lock()
		defer k.mu.Unlock()
		k.inflight = nil
		k.lastErr = err
		if err != nil {
			k.nextTry = now.Add(k.cfg.RetryInterval)
		} else {
			k.jwksURL, k.keys, k.fetched = discovered, keys, now
			k.nextTry = now.Add(k.cfg.MinRefreshInterval)
		}
		close(done)
	}()
	return done
}

// fetch discovers the key set's URL when it is not known yet, then
// fetches the key set.
func (k *keyCache) fetch(ctx context.Context, jwksURL string) (string, []jose.JSONWebKey, error) {
	if jwksURL == "" {
		u, err := k.discover(ctx)
		if err != nil {
			return "", nil, err
		}
		jwksURL = u
	}
	var set jose.JSONWebKeySet
	if err := getJSON(ctx, k.cfg.Client, jwksURL, &set); err != nil {
		return "", nil, fmt.Errorf("key set: %w", err)
	}
	keys := usableKeys(set.Keys)
	if len(keys) == 0 {
		return "", nil, fmt.Errorf("key set %s holds no public signing key", jwksURL)
	}
	return jwksURL, keys, nil
}

// discover reads the jwks_uri of the issuer's OpenID configuration, whose
// issuer must be the one configured.
func (k *keyCache) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(k.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := getJSON(ctx, k.cfg.Client, u, &doc); err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	if doc.Issuer != k.cfg.Issuer {
		return "", fmt.Errorf("discovery: %s names the issuer %q, not %q", u, doc.Issuer, k.cfg.Issuer)
	}
	if err := checkURL("jwks_uri", doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery: %s: %w", u, err)
	}
	return doc.JWKSURI, nil
}

// getJSON reads the JSON document at u into v.
func getJSON(ctx context.Context, c *http.Client, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocumentBytes))
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if len(b) > maxDocumentBytes {
		return fmt.Errorf("GET %s: the document is over %d bytes", u, maxDocumentBytes)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: not JSON of the kind expected: %w", u, err)
	}
	return nil
}

// usableKeys are the public signing keys of ks: no symmetric key, no
// private one, none for encryption.
func usableKeys(ks []jose.JSONWebKey) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range ks {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		switch k.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			continue
		}
		out = append(out, k)
		if len(out) == maxJWKSKeys {
			break
		}
	}
	return out
}

func hasKey(ks []jose.JSONWebKey, kid string) bool {
	for _, k := range ks {
		if k.KeyID == kid {
			return true
		}
	}
	return false
}
