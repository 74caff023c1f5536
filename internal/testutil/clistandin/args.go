// Package clistandin plays the Dapr CLI (v1.14) in tests, where the CLI
// itself cannot be built (its module is not on the module proxy): the
// argument lists `dapr run` passes its runtime, as recorded from the real
// CLI, and what `dapr list` and `dapr stop` do with a sidecar's metadata
// API. It is a stand-in: docs/dapr-cli.md ("Using the Dapr CLI") is checked
// with the real CLI by hand.
package clistandin

import "strconv"

// Ports are the ports `dapr run` picks for a sidecar.
type Ports struct {
	HTTP, GRPC, Metrics, Internal int
}

// RunArgs are the arguments the Dapr CLI v1.14.1 passes its runtime for an
// app without an app port, home being the user's home folder (where `dapr
// init` keeps config.yaml and components), by how it was started and what
// it read from the runtime's --version:
//
//   - "dapr run, runtime 1.14 or later": `dapr run --app-id <appID>`;
//   - "dapr run, older runtime": the same when the runtime's version is
//     below 1.14.0-rc.1, or not a version at all (ours, 0.x; or none): the
//     CLI blanks the --scheduler-host-address argument to "" and leaves
//     its value after it;
//   - "dapr run -f": an app of a run file (dapr.yaml), whatever the
//     version.
//
// They were recorded from the real CLI by a runtime that wrote its
// arguments down (the first as the issue recorded it); only the folders,
// the app id and the ports are parameters.
func RunArgs(home, appID string, p Ports) map[string][]string {
	ports := []string{
		"--app-id", appID,
		"--app-port", "0",
		"--dapr-http-port", strconv.Itoa(p.HTTP),
		"--dapr-grpc-port", strconv.Itoa(p.GRPC),
		"--profile-port", "-1",
		"--metrics-port", strconv.Itoa(p.Metrics),
		"--dapr-internal-grpc-port", strconv.Itoa(p.Internal),
	}
	run := func(scheduler ...string) []string {
		a := []string{
			"--config", home + "/.dapr/config.yaml",
			"--app-protocol", "http",
			"--log-level", "info",
			"--app-max-concurrency", "-1",
			"--placement-host-address", "localhost:50005",
			"--components-path", home + "/.dapr/components",
			"--dapr-http-max-request-size", "-1",
			"--dapr-http-read-buffer-size", "-1",
		}
		a = append(a, scheduler...)
		return append(a, ports...)
	}
	runFile := append([]string{
		"--config", home + "/.dapr/config.yaml",
		"--app-protocol", "http",
		"--app-max-concurrency", "-1",
		"--placement-host-address", "localhost:50005",
		"--resources-path", home + "/.dapr/components",
		"--dapr-http-max-request-size", "-1",
		"--dapr-http-read-buffer-size", "-1",
	}, ports...)
	return map[string][]string{
		"dapr run, runtime 1.14 or later": run("--scheduler-host-address", "localhost:50006"),
		"dapr run, older runtime":         run("", "localhost:50006"),
		"dapr run -f":                     runFile,
	}
}
