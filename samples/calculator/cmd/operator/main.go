// Command operator is one of the calculator's operator services (addapp,
// subtractapp, multiplyapp, divideapp): it serves POST /<op> on $APP_PORT.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"

	"github.com/tandem-run/tandem/samples/calculator/internal/serve"
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
	serve.Run(*op+" operator", port, mux)
}
