// Command frontend is the calculator's web front end (app id
// calculator-front-end). It listens on $APP_PORT (default 8080) and reaches
// everything else through its sidecar on $DAPR_HTTP_PORT (default 3500).
package main

import (
	"os"

	"github.com/tandem-run/tandem/samples/calculator/frontend"
	"github.com/tandem-run/tandem/samples/calculator/internal/serve"
)

func main() {
	fe := frontend.New(envOr("DAPR_HTTP_PORT", "3500"))
	serve.Run("calculator front end", envOr("APP_PORT", "8080"), fe.Handler())
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
