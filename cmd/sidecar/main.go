// Command sidecar is the Tandem sidecar: it runs beside an app and gives it
// service invocation by app id, state and tracing over Dapr's HTTP API.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	// First among the packages that initialise: the sidecar starts on
	// its default CPUs (see the package).
	_ "github.com/tandem-run/tandem/internal/maxprocs"
)

func main() {
	opts, err := parseOptions(os.Args[1:], os.Getenv)
	var usage *usageError
	if errors.As(err, &usage) {
		fmt.Print(usage.text)
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "sidecar: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintf(os.Stderr, "sidecar: %v\n", err)
		os.Exit(1)
	}
}
