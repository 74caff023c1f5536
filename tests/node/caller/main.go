// Command caller is the app of tests/node's Jobs and load: it calls another
// app through its own sidecar (DAPR_HTTP_PORT), POST
// /v1.0/invoke/<app>/method/<method> with a body, and checks the answer.
//
//	caller -app addapp -method add -body '{"operandOne":"52","operandTwo":"34"}' -want 86
//
// With DAPR_API_TOKEN set it sends it (dapr-api-token), as Dapr's SDKs do.
// It makes -calls calls (one by default), retrying none (-wait-sidecar
// waits for the sidecar first), and exits 0 if
// every answer was 200 with the wanted body, 1 otherwise, after printing
// how many calls succeeded and failed.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	app := flag.String("app", "", "app id to call")
	method := flag.String("method", "", "method to call")
	body := flag.String("body", "", "request body (JSON)")
	want := flag.String("want", "", "the answer's body (trimmed) every call must get")
	calls := flag.Int("calls", 1, "how many calls")
	waitSidecar := flag.Duration("wait-sidecar", 0, "first wait up to this long for the sidecar to serve (GET /v1.0/healthz/outbound), as an app beside a classic sidecar must")
	flag.Parse()
	port := os.Getenv("DAPR_HTTP_PORT")
	if *app == "" || *method == "" || port == "" {
		fmt.Fprintln(os.Stderr, "caller: -app, -method and DAPR_HTTP_PORT are required")
		os.Exit(2)
	}
	url := "http://127.0.0.1:" + port + "/v1.0/invoke/" + *app + "/method/" + *method
	client := &http.Client{Timeout: 10 * time.Second}
	for deadline := time.Now().Add(*waitSidecar); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := client.Get("http://127.0.0.1:" + port + "/v1.0/healthz/outbound"); err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				break
			}
		}
	}
	var ok, failed int
	for range *calls {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(*body)))
		req.Header.Set("Content-Type", "application/json")
		if token := os.Getenv("DAPR_API_TOKEN"); token != "" {
			req.Header.Set("dapr-api-token", token)
		}
		resp, err := client.Do(req)
		if err != nil {
			fmt.Println("call:", err)
			failed++
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || *want != "" && strings.TrimSpace(string(b)) != *want {
			fmt.Printf("call: %d %s\n", resp.StatusCode, b)
			failed++
			continue
		}
		ok++
	}
	fmt.Printf("%d calls succeeded, %d failed\n", ok, failed)
	if failed > 0 {
		os.Exit(1)
	}
}
