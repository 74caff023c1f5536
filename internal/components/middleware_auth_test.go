package components

import (
	"strings"
	"testing"
)

// The token middleware build without reaching their provider (one that
// does not exist here builds); Dapr's authorization-code middleware is
// refused when read, saying why and what to use; bad metadata names the field.
func TestBuildAuthMiddleware(t *testing.T) {
	for _, c := range []struct {
		name string
		yaml []byte
		want []string // in the error; none: it builds
	}{
		{"bearer", pubsubYAML("auth", "middleware.http.bearer", "issuer", "https://idp.invalid/realms/a", "audience", "orders"), nil},
		{"bearer, Dapr's aliases", pubsubYAML("auth", "middleware.http.bearer", "issuerURL", "https://idp.invalid", "clientID", "orders", "jwksURL", "https://idp.invalid/keys"), nil},
		{"bearer without audience", pubsubYAML("auth", "middleware.http.bearer", "issuer", "https://idp.invalid"), []string{"mw.yaml", `component "auth"`, "metadata audience is required"}},
		{"client credentials", pubsubYAML("cc", "middleware.http.oauth2clientcredentials", "clientId", "c", "clientSecret", "s", "scopes", "a,b", "tokenURL", "https://idp.invalid/token", "headerName", "Authorization", "endpointParamsQuery", "audience=x", "authStyle", "1"), nil},
		{"client credentials without secret", pubsubYAML("cc", "middleware.http.oauth2clientcredentials", "clientId", "c", "tokenURL", "https://idp.invalid/token", "headerName", "Authorization"), []string{"mw.yaml", "metadata clientSecret is required"}},
		{"authorization code", pubsubYAML("login", "middleware.http.oauth2", "clientId", "c"), []string{"mw.yaml", `"middleware.http.oauth2"`, "is not built by this sidecar", "docs/middleware.md", "middleware.http.bearer"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			comps, err := Parse(c.yaml, "mw.yaml")
			if err == nil {
				_, err = BuildMiddleware(comps[0], nil)
			}
			if len(c.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("built; want an error with %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
