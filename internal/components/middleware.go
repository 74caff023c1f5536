package components

import (
	"strings"

	"github.com/tandem-run/tandem/internal/middleware"
)

// MiddlewareTypes are the middleware component types this sidecar builds.
var MiddlewareTypes = []string{middleware.TypeRateLimit}

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
	default:
		return nil, c.errorf("spec.type %q is not a middleware type; accepted: %s", c.Spec.Type, strings.Join(MiddlewareTypes, ", "))
	}
}
