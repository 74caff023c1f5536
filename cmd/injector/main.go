// Command injector is the Kubernetes side of the sidecar: a mutating
// admission webhook that adds the sidecar to pods annotated
// dapr.io/enabled: "true", and a controller that keeps each such app's
// headless <app-id>-dapr Service.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	o, err := parseOptions(os.Args[1:], os.Getenv)
	var usage *usageError
	if errors.As(err, &usage) {
		fmt.Print(usage.text)
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "injector: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "injector: %v\n", err)
		os.Exit(1)
	}
}
