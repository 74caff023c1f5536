// Command frontend is the calculator's web front end (app id
// calculator-front-end). It listens on $APP_PORT (default 8080) and reaches
// everything else through its sidecar on $DAPR_HTTP_PORT (default 3500).
package main

import (
	"context"
	"errors"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tandem-run/tandem/samples/calculator/frontend"
)

func main() {
	port := envOr("APP_PORT", "8080")
	fe := frontend.New(envOr("DAPR_HTTP_PORT", "3500"))
	srv := &http.Server{Addr: ":" + port, Handler: fe.Handler(), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Printf("calculator front end listening on :%s", port)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
