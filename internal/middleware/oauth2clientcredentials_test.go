package middleware

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandem-run/tandem/internal/testutil/oidcop"
)

func TestParseOAuth2ClientCredentials(t *testing.T) {
	good := func(kv ...string) map[string]string {
		md := map[string]string{"clientId": "c", "clientSecret": "s", "tokenURL": "https://idp.example/token", "headerName": "Authorization"}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "-" {
				delete(md, kv[i])
				continue
			}
			md[kv[i]] = kv[i+1]
		}
		return md
	}
	for _, c := range []struct {
		name string
		md   map[string]string
		want string
	}{
		{"good", good("scopes", "a,b c", "endpointParamsQuery", "resource=api", "authStyle", "2", "pathFilter", "^/v1.0/invoke/"), ""},
		{"no secret nor URL", good("clientSecret", "-", "tokenURL", "-"), "metadata clientSecret, tokenURL are required"},
		{"no header", good("headerName", "-"), "metadata headerName is required"},
		{"bad header", good("headerName", "Auth orization"), `metadata headerName "Auth orization" is not a header name`},
		{"authStyle 3", good("authStyle", "3"), `metadata authStyle "3" is not 0 (found out), 1 (in the form) or 2 (HTTP Basic)`},
		{"bad query", good("endpointParamsQuery", "a=%zz"), "metadata endpointParamsQuery \"a=%zz\" is not a URL query"},
		{"bad filter", good("pathFilter", "("), "metadata pathFilter \"(\" is not a regular expression"},
		{"token URL not a URL", good("tokenURL", "/token"), "metadata tokenURL \"/token\" is not an absolute http or https URL"},
		{"unknown field", good("scope", "x"), `metadata field "scope" is not read by middleware.http.oauth2clientcredentials`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseOAuth2ClientCredentials(c.md)
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
			if c.name == "good" && (strings.Join(cfg.Scopes, "|") != "a|b|c" || cfg.EndpointParams.Get("resource") != "api" || cfg.AuthStyle != 2) {
				t.Fatalf("config %+v", cfg)
			}
		})
	}
}

// The sidecar fetches a token of the provider once, puts it on every call
// (HTTP, gRPC unary and proxied), where the bearer middleware verifies
// it; renews it in the background once three quarters of its life are
// over, no call waiting; and refuses calls with 503 (Unavailable) while
// it holds no good token and the provider cannot give one.
func TestOAuth2ClientCredentialsWithProvider(t *testing.T) {
	idp := oidcop.Start(t, nil)
	clk := &testClock{}
	cc := NewOAuth2ClientCredentials("cc", OAuth2ClientCredentialsConfig{
		ClientID: oidcop.ClientID, ClientSecret: oidcop.ClientSecret, TokenURL: idp.TokenURL(),
		HeaderName: "Authorization", Scopes: []string{"openid"}, Fetch: Fetch{Now: clk.now},
	})
	b := NewBearer("bearer", BearerConfig{Issuer: idp.Issuer(), Audience: oidcop.Audience}) // the provider's clock
	e := newEdge(t, Pipeline{{Name: "cc", Type: TypeOAuth2ClientCredentials, Middleware: cc}, {Name: "bearer", Type: TypeBearer, Middleware: b}})

	var first string
	for i := range 5 {
		if resp := e.callHTTP(t, "not-a-token"); resp.StatusCode != 200 {
			t.Fatalf("call %d: %d", i, resp.StatusCode)
		}
		seen := *e.seen.Load()
		if first == "" {
			first = seen.Get("Authorization")
		}
		if v := seen.Values("Authorization"); len(v) != 1 || v[0] != first || !strings.HasPrefix(first, "Bearer ey") || seen.Get("Dapr-Bearer-Subject") != oidcop.ClientID {
			t.Fatalf("call %d: the app saw %v", i, seen)
		}
		if err := e.callGRPC(t, "", i%2 == 0); err != nil {
			t.Fatalf("gRPC call %d: %v", i, err)
		}
		if md := *e.gseen.Load(); len(md.Get("authorization")) != 1 || md.Get("authorization")[0] != first {
			t.Fatalf("gRPC call %d: the app saw %v", i, md)
		}
	}
	if n := idp.TokenRequests(); n != 1 {
		t.Fatalf("token requests for 15 calls: %d", n)
	}

	// Three quarters of its 5 min: the held token serves while the next
	// is fetched.
	clk.advance(4 * time.Minute)
	release := idp.Hold() // holds the key set only: the bearer's keys are in hand
	defer release()
	if resp := e.callHTTP(t, ""); resp.StatusCode != 200 || (*e.seen.Load()).Get("Authorization") != first {
		t.Fatalf("call at 4 min: %d", resp.StatusCode)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp := e.callHTTP(t, "")
		if resp.StatusCode != 200 {
			t.Fatalf("call while renewing: %d", resp.StatusCode)
		}
		if (*e.seen.Load()).Get("Authorization") != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the token was not renewed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := idp.TokenRequests(); n != 2 {
		t.Fatalf("token requests after the renewal: %d", n)
	}

	// Past the new token's life, the provider down: 503, Unavailable.
	idp.SetDown(true)
	clk.advance(10 * time.Minute)
	resp := e.callHTTP(t, "")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || e.seen.Load() != nil {
		t.Fatalf("provider down, token expired: %d %v", resp.StatusCode, resp.Header)
	}
	if err := e.callGRPC(t, "", true); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "cc: no token could be had from "+idp.TokenURL()) {
		t.Fatalf("gRPC, provider down: %v", err)
	}
	idp.SetDown(false)
	clk.advance(DefaultRetryInterval + time.Second)
	if resp := e.callHTTP(t, ""); resp.StatusCode != 200 {
		t.Fatalf("provider back: %d", resp.StatusCode)
	}
}

// A wrong secret is a 503 that says what the provider answered; a call
// whose path the filter does not match goes on without a token.
func TestOAuth2ClientCredentialsRefused(t *testing.T) {
	idp := oidcop.Start(t, nil)
	cfg, err := ParseOAuth2ClientCredentials(map[string]string{"clientID": oidcop.ClientID, "clientSecret": "wrong",
		"tokenURL": idp.TokenURL(), "headerName": "X-Token", "pathFilter": "^/v1.0/invoke/"})
	if err != nil {
		t.Fatal(err)
	}
	cc := NewOAuth2ClientCredentials("cc", cfg)
	err = cc.Handle(context.Background(), &Call{Method: "/v1.0/invoke/x/method/y", Header: http.Header{}})
	if e := (*Refusal)(nil); !errors.As(err, &e) || e.Err.HTTPStatus != 503 || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("wrong secret: %v", err)
	}
	h := http.Header{}
	if err := cc.Handle(context.Background(), &Call{Method: "/v1.0/state/s", Header: h}); err != nil || h.Get("X-Token") != "" {
		t.Fatalf("path not matched: %v %v", err, h)
	}
}

// The internal port drops the Dapr-Bearer-* headers of every call from
// another sidecar, a pipeline or none.
func TestHopStripsBearerHeaders(t *testing.T) {
	s := NewSwitch("app", nil, nil)
	var got http.Header
	h := s.Hop(App, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	r := httptest.NewRequest("POST", "/method", nil)
	r.Header.Set("Dapr-Bearer-Subject", "forged")
	r.Header.Set("Dapr-Bearer-Claims", "e30")
	r.Header.Set("X-Other", "kept")
	serve(t, h, r)
	if got.Get("Dapr-Bearer-Subject") != "" || got.Get("Dapr-Bearer-Claims") != "" || got.Get("X-Other") != "kept" {
		t.Fatalf("the app got %v", got)
	}
}
