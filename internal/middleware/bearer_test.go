package middleware

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tandem-run/tandem/internal/testutil/oidcop"
)

func TestParseBearer(t *testing.T) {
	good := map[string]string{"issuer": "https://idp.example/realms/a", "audience": "api"}
	for _, c := range []struct {
		name string
		md   map[string]string
		want string // "" : accepted
	}{
		{"good", good, ""},
		{"dapr aliases", map[string]string{"issuerURL": "https://idp.example", "clientID": "api", "jwksURL": "https://idp.example/keys", "allowedClockSkew": "30s"}, ""},
		{"no issuer", map[string]string{"audience": "api"}, "metadata issuer is required"},
		{"no audience", map[string]string{"issuer": "https://idp.example"}, "metadata audience is required"},
		{"issuer not a URL", map[string]string{"issuer": "idp.example", "audience": "api"}, `metadata issuer "idp.example" is not an absolute http or https URL`},
		{"jwksURL not a URL", map[string]string{"issuer": "https://idp.example", "audience": "api", "jwksURL": "ftp://x/keys"}, "metadata jwksURL"},
		{"skew too long", map[string]string{"issuer": "https://idp.example", "audience": "api", "allowedClockSkew": "1h"}, "metadata allowedClockSkew \"1h\" is not a duration from 0s to 10m0s"},
		{"unknown field", map[string]string{"issuer": "https://idp.example", "audience": "api", "audiences": "x"}, `metadata field "audiences" is not read by middleware.http.bearer; it reads issuer, audience, jwksURL, allowedClockSkew`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseBearer(c.md)
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
		})
	}
}

// clock is a settable clock, from the real time.
type testClock struct{ off atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *testClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// edge is a Switch with one pipeline, reached over real HTTP and gRPC
// servers; the app behind them answers with the headers it got.
type edge struct {
	http  *httptest.Server
	grpc  *grpc.ClientConn
	seen  atomic.Pointer[http.Header] // the headers the HTTP app saw last
	gseen atomic.Pointer[metadata.MD] // the metadata the gRPC app saw last
}

func newEdge(t *testing.T, p Pipeline) *edge {
	t.Helper()
	s := NewSwitch("app", nil, nil)
	s.Set(p, nil)
	e := &edge{}
	e.http = httptest.NewServer(s.HTTP(API, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		e.seen.Store(&h)
	})))
	t.Cleanup(e.http.Close)
	srv := grpc.NewServer(append(s.GRPCServerOptions(API), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		md = md.Copy()
		e.gseen.Store(&md)
		return status.Error(codes.Unimplemented, "reached the proxy")
	}))...)
	srv.RegisterService(&grpc.ServiceDesc{ServiceName: "test.Echo", HandlerType: (*any)(nil), Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(_ any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			req := &healthpb.HealthCheckRequest{}
			if err := dec(req); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, _ any) (any, error) {
				md, _ := metadata.FromIncomingContext(ctx)
				md = md.Copy()
				e.gseen.Store(&md)
				return &healthpb.HealthCheckResponse{}, nil
			}
			return in(ctx, req, &grpc.UnaryServerInfo{FullMethod: "/test.Echo/Unary"}, h)
		},
	}}}, struct{}{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	e.grpc, err = grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.grpc.Close() })
	return e
}

// callHTTP calls with the header "Authorization: Bearer tok" (none when
// tok is empty) and a forged claims header.
func (e *edge) callHTTP(t *testing.T, tok string) *http.Response {
	t.Helper()
	e.seen.Store(nil)
	req, _ := http.NewRequest("GET", e.http.URL+"/v1.0/invoke/x/method/y", nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("Dapr-Bearer-Subject", "forged")
	req.Header.Set("dapr-bearer-Extra", "forged")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// callGRPC calls a unary method (unary true) or the proxy, likewise.
func (e *edge) callGRPC(t *testing.T, tok string, unary bool) error {
	t.Helper()
	e.gseen.Store(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	md := metadata.Pairs("dapr-bearer-subject", "forged")
	if tok != "" {
		md.Set("authorization", "Bearer "+tok)
	}
	ctx = metadata.NewOutgoingContext(ctx, md)
	method := "/some.App/Method"
	if unary {
		method = "/test.Echo/Unary"
	}
	err := e.grpc.Invoke(ctx, method, &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	if !unary && status.Code(err) == codes.Unimplemented && strings.Contains(err.Error(), "reached the proxy") {
		return nil
	}
	return err
}

// signed is a token of the claims, signed with key as kid and alg.
func signed(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func goodClaims(issuer string) jwt.Claims {
	now := time.Now()
	return jwt.Claims{Issuer: issuer, Subject: "crafted", Audience: jwt.Audience{oidcop.Audience},
		Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)), IssuedAt: jwt.NewNumericDate(now)}
}

// Tokens the provider issues pass on HTTP and gRPC (unary and proxied),
// and the app gets their claims in headers a caller cannot forge; every
// other token is refused, 401 with an RFC 6750 challenge on HTTP,
// Unauthenticated on gRPC.
func TestBearerWithProvider(t *testing.T) {
	idp := oidcop.Start(t, nil)
	other := oidcop.Start(t, idp.Storage) // another issuer, same keys
	b := NewBearer("bearer", BearerConfig{Issuer: idp.Issuer(), Audience: oidcop.Audience, ClockSkew: time.Second})
	e := newEdge(t, Pipeline{{Name: "bearer", Type: TypeBearer, Middleware: b}})

	good := idp.Token(t)
	resp := e.callHTTP(t, good)
	if resp.StatusCode != 200 {
		t.Fatalf("a token of the provider: %d %v", resp.StatusCode, resp.Header)
	}
	seen := *e.seen.Load()
	if seen.Get("Dapr-Bearer-Subject") != oidcop.ClientID || seen.Get("Dapr-Bearer-Extra") != "" || len(seen.Values("Dapr-Bearer-Subject")) != 1 {
		t.Fatalf("the app saw %v", seen)
	}
	raw, err := base64.RawURLEncoding.DecodeString(seen.Get("Dapr-Bearer-Claims"))
	var claims map[string]any
	if err != nil || json.Unmarshal(raw, &claims) != nil || claims["iss"] != idp.Issuer() || claims["client_id"] != oidcop.ClientID {
		t.Fatalf("claims header %q: %s %v", seen.Get("Dapr-Bearer-Claims"), raw, err)
	}
	for _, unary := range []bool{true, false} {
		if err := e.callGRPC(t, good, unary); err != nil {
			t.Fatalf("gRPC (unary %v) with a token of the provider: %v", unary, err)
		}
		md := *e.gseen.Load()
		if got := md.Get("dapr-bearer-subject"); len(got) != 1 || got[0] != oidcop.ClientID || len(md.Get("dapr-bearer-claims")) != 1 {
			t.Fatalf("gRPC (unary %v): the app saw %v", unary, md)
		}
	}

	// Tokens of the provider that must not pass.
	idp.Storage.SetTokens(-time.Minute, oidcop.Audience)
	expired := idp.Token(t)
	idp.Storage.SetTokens(5*time.Minute, "another-api")
	wrongAud := idp.Token(t)
	idp.Storage.SetTokens(5*time.Minute, oidcop.Audience)
	wrongIss := other.Token(t)

	// Crafted ones.
	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	unknownKey := signed(t, jose.RS256, stranger, "not-a-key-of-the-issuer", goodClaims(idp.Issuer()))
	noKid := signed(t, jose.RS256, stranger, "", goodClaims(idp.Issuer()))
	cur := idp.Storage.Current()
	payload, _ := json.Marshal(goodClaims(idp.Issuer()))
	algNone := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"`+cur.ID+`"}`)) + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
	der, _ := x509.MarshalPKIXPublicKey(&cur.Private.PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hmacWithPublic := signed(t, jose.HS256, pemKey, cur.ID, goodClaims(idp.Issuer()))
	parts := strings.Split(good, ".")
	var forged map[string]any
	p, _ := base64.RawURLEncoding.DecodeString(parts[1])
	_ = json.Unmarshal(p, &forged)
	forged["sub"] = "admin"
	fp, _ := json.Marshal(forged)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(fp) + "." + parts[2]

	for _, c := range []struct {
		name, tok, challenge, message string
	}{
		{"no token", "", `Bearer realm="orders-api"`, "no bearer token"},
		{"expired", expired, `error="invalid_token"`, "the token expired at"},
		{"wrong audience", wrongAud, `error="invalid_token"`, `does not hold "orders-api"`},
		{"wrong issuer", wrongIss, `error="invalid_token"`, "the token's issuer " + fmt.Sprintf("%q", other.Issuer())},
		{"unknown key", unknownKey, `error="invalid_token"`, `the token's key "not-a-key-of-the-issuer" is not one of the issuer's`},
		{"no kid, a stranger's key", noKid, `error="invalid_token"`, "signature does not verify"},
		{"alg none", algNone, `error="invalid_token"`, "is not a JWT signed with one of RS256"},
		{"HMAC with the public key", hmacWithPublic, `error="invalid_token"`, "is not a JWT signed with one of RS256"},
		{"tampered payload", tampered, `error="invalid_token"`, "signature does not verify"},
		{"not a JWT", "abc.def", `error="invalid_token"`, "is not a JWT"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := e.callHTTP(t, c.tok)
			if resp.StatusCode != 401 || e.seen.Load() != nil {
				t.Fatalf("HTTP %d, reached the app: %v", resp.StatusCode, e.seen.Load() != nil)
			}
			ch := resp.Header.Get("WWW-Authenticate")
			if !strings.HasPrefix(ch, `Bearer realm="orders-api"`) || !strings.Contains(ch, c.challenge) || (c.tok == "") != !strings.Contains(ch, "error=") {
				t.Fatalf("WWW-Authenticate %q", ch)
			}
			for _, unary := range []bool{true, false} {
				err := e.callGRPC(t, c.tok, unary)
				if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), c.message) || e.gseen.Load() != nil {
					t.Fatalf("gRPC (unary %v): %v, want Unauthenticated with %q", unary, err, c.message)
				}
			}
		})
	}
	// A token that expired a minute ago passes with daprd's skew, 5 min.
	lenient := NewBearer("bearer", BearerConfig{Issuer: idp.Issuer(), Audience: oidcop.Audience, ClockSkew: DefaultClockSkew})
	if err := lenient.Handle(context.Background(), &Call{Header: http.Header{"Authorization": {"Bearer " + expired}}}); err != nil {
		t.Fatalf("a token expired a minute ago, skew 5 min: %v", err)
	}
}

// Keys rotated while serving: the new key is fetched when a token names
// it; a flood of tokens naming unknown keys costs one fetch per
// MinRefreshInterval, whatever their number.
func TestBearerRotation(t *testing.T) {
	idp := oidcop.Start(t, nil)
	idp.Storage.SetTokens(time.Hour, oidcop.Audience) // good while the test's clock moves on
	clk := &testClock{}
	// A bound far longer than the test may take on a busy machine.
	const bound = 10 * time.Minute
	b := NewBearer("bearer", BearerConfig{Issuer: idp.Issuer(), Audience: oidcop.Audience, JWKSURL: idp.JWKSURL(), MinRefreshInterval: bound, Fetch: Fetch{Now: clk.now}})
	e := newEdge(t, Pipeline{{Name: "bearer", Type: TypeBearer, Middleware: b}})
	if resp := e.callHTTP(t, idp.Token(t)); resp.StatusCode != 200 {
		t.Fatalf("first token: %d", resp.StatusCode)
	}
	if n := idp.KeyFetches(); n != 1 {
		t.Fatalf("key fetches after the first call: %d", n)
	}
	// Rotated, the old key withdrawn: the new token's key is fetched.
	clk.advance(bound)
	idp.Storage.Rotate(t, false)
	fresh := idp.Token(t)
	if resp := e.callHTTP(t, fresh); resp.StatusCode != 200 {
		t.Fatalf("a token of the new key: %d %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if err := e.callGRPC(t, fresh, true); err != nil {
		t.Fatalf("gRPC, a token of the new key: %v", err)
	}
	if n := idp.KeyFetches(); n != 2 {
		t.Fatalf("key fetches after the rotation: %d", n)
	}

	// A flood of unknown keys, some while a fetch is held up.
	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(bound)
	release := idp.Hold()
	var wg sync.WaitGroup
	var refused, passed atomic.Int64
	const flood = 300
	for i := range flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := signed(t, jose.RS256, stranger, fmt.Sprintf("flood-%d", i), goodClaims(idp.Issuer()))
			if i%3 == 0 {
				tok = fresh
			}
			code := codes.OK
			if i%2 == 0 {
				code = status.Code(e.callGRPC(t, tok, true))
			} else if resp := e.callHTTP(t, tok); resp.StatusCode == 401 {
				code = codes.Unauthenticated
			}
			switch {
			case code == codes.Unauthenticated && i%3 != 0:
				refused.Add(1)
			case code == codes.OK && i%3 == 0:
				passed.Add(1)
			default:
				t.Errorf("call %d: %v", i, code)
			}
		}()
	}
	// The calls with the known key pass while the fetch is held; release
	// it once one fetch has started.
	for deadline := time.Now().Add(time.Minute); idp.KeyFetches() < 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no fetch of the key set for the unknown keys")
		}
	}
	release()
	wg.Wait()
	if n := idp.KeyFetches(); n != 3 {
		t.Fatalf("key fetches after a flood of %d unknown keys: %d, want 3", flood, n)
	}
	if refused.Load() != 200 || passed.Load() != 100 {
		t.Fatalf("refused %d, passed %d", refused.Load(), passed.Load())
	}
	// Past the bound, an unknown key is fetched again: once.
	clk.advance(bound)
	for i := range 5 {
		if resp := e.callHTTP(t, signed(t, jose.RS256, stranger, fmt.Sprintf("later-%d", i), goodClaims(idp.Issuer()))); resp.StatusCode != 401 {
			t.Fatalf("unknown key: %d", resp.StatusCode)
		}
	}
	if n := idp.KeyFetches(); n != 4 {
		t.Fatalf("key fetches: %d, want 4", n)
	}
}

// A provider down when the middleware is built, or when its keys are
// first needed: 503 (Unavailable) naming the issuer, at once for the calls
// within the retry wait, and the tokens pass once it is back. A provider
// that does not answer holds a call no longer than the fetch timeout.
func TestBearerProviderDown(t *testing.T) {
	idp := oidcop.Start(t, nil)
	tok := idp.Token(t)
	idp.SetDown(true)
	clk := &testClock{}
	// A retry wait far longer than the test may take on a busy machine.
	b := NewBearer("bearer", BearerConfig{Issuer: idp.Issuer(), Audience: oidcop.Audience, Fetch: Fetch{RetryInterval: time.Minute, Now: clk.now}})
	e := newEdge(t, Pipeline{{Name: "bearer", Type: TypeBearer, Middleware: b}})
	before := idp.Requests()
	resp := e.callHTTP(t, tok)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "60" {
		t.Fatalf("provider down: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	err := e.callGRPC(t, tok, true)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "the keys of issuer "+idp.Issuer()+" could not be had (discovery: GET "+idp.Issuer()+"/.well-known/openid-configuration: 503") {
		t.Fatalf("gRPC, provider down: %v", err)
	}
	if n := idp.Requests() - before; n != 1 {
		t.Fatalf("requests to the provider within the retry wait: %d", n)
	}
	idp.SetDown(false)
	clk.advance(time.Minute + time.Second)
	if resp := e.callHTTP(t, tok); resp.StatusCode != 200 {
		t.Fatalf("provider back: %d", resp.StatusCode)
	}

	// A provider that holds its answer: the call ends after the fetch
	// timeout with a 503, and the next token passes once it answers.
	idp2 := oidcop.Start(t, nil)
	release := idp2.Hold()
	defer release()
	b2 := NewBearer("bearer", BearerConfig{Issuer: idp2.Issuer(), Audience: oidcop.Audience, Fetch: Fetch{FetchTimeout: 200 * time.Millisecond, Now: clk.now}})
	e2 := newEdge(t, Pipeline{{Name: "bearer", Type: TypeBearer, Middleware: b2}})
	if resp := e2.callHTTP(t, idp2.Token(t)); resp.StatusCode != 503 {
		t.Fatalf("provider hanging: %d", resp.StatusCode)
	}
	release()
	clk.advance(DefaultRetryInterval + time.Second)
	if resp := e2.callHTTP(t, idp2.Token(t)); resp.StatusCode != 200 {
		t.Fatalf("provider answering again: %d", resp.StatusCode)
	}
}
