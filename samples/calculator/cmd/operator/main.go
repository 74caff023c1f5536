// Command operator is one of the calculator's operator services (addapp,
// subtractapp, multiplyapp, divideapp): it serves POST /<op> on $APP_PORT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tandem-run/tandem/samples/calculator/operator"
)

func main() {
	op := flag.String("op", os.Getenv("OPERATION"), "operation: add, subtract, multiply or divide (env OPERATION)")
	flag.Parse()
	if _, ok := operator.Ops[*op]; !ok {
		fmt.Fprintf(os.Stderr, "operator: -op %q is not valid; use add, subtract, multiply or divide\n", *op)
		os.Exit(2)
	}
	port := os.Getenv("APP_PORT")
	if port == "" {
		port = "6000"
	}
	mux := http.NewServeMux()
	mux.Handle("/"+*op, operator.Handler(*op))
	srv := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Printf("%s operator listening on :%s", *op, port)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
