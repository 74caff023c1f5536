package components

import (
	"fmt"
	"strings"

	"github.com/tandem-run/tandem/internal/middleware"
)

// MiddlewareTypes are the middleware component types this sidecar builds.
var MiddlewareTypes = []string{middleware.TypeRateLimit, middleware.TypeBearer, middleware.TypeOAuth2ClientCredentials}

// oauth2Refused says why middleware.http.oauth2 is refused.
var oauth2Refused = fmt.Sprintf("spec.type %q (the authorization-code flow: a browser login) is not built by this sidecar: "+
	"it serves APIs to its app, not login pages and session cookies to browsers (see docs/middleware.md); "+
	"check tokens with %s, and let the app's web framework run the login", middleware.TypeOAuth2, middleware.TypeBearer)

// BuildMiddleware builds the middleware of the Component c, its
// secretKeyRefs read through secrets (nil: a secretKeyRef is an error). A
// metadata field the type does not know is an error naming it and the
// fields it accepts.
func BuildMiddleware(c Component, secrets Secrets) (middleware.Middleware, error) {
	md, err := c.ResolveMetadata(secrets)
	if err != nil {
		return nil, err
	}
	switch c.Spec.Type {
	case middleware.TypeRateLimit:
		cfg, err := middleware.ParseRateLimit(md)
		if err != nil {
			return nil, c.errorf("%v", err)
		}
		return middleware.NewRateLimit(c.Metadata.Name, cfg, nil), nil
	case middleware.TypeBearer:
		cfg, err := middleware.ParseBearer(md)
		if err != nil {
			return nil, c.errorf("%v", err)
		}
		return middleware.NewBearer(c.Metadata.Name, cfg), nil
	case middleware.TypeOAuth2ClientCredentials:
		cfg, err := middleware.ParseOAuth2ClientCredentials(md)
		if err != nil {
			return nil, c.errorf("%v", err)
		}
		return middleware.NewOAuth2ClientCredentials(c.Metadata.Name, cfg), nil
	case middleware.TypeOAuth2:
		return nil, c.errorf("%s", oauth2Refused)
	default:
		return nil, c.errorf("spec.type %q is not a middleware type; accepted: %s", c.Spec.Type, strings.Join(MiddlewareTypes, ", "))
	}
}
