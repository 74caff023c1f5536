package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	testproc "github.com/tandem-run/tandem/internal/testutil/proc"
)

// profile is what -profile captured: the file written, or why not.
type profile struct {
	path string // the path it was taken on
	file string
	err  error
}

// profileFlags are the sidecar flags that serve its pprof on a free port
// (--enable-profiling, --profile-port), and that pprof's base URL; none
// when on is false.
func profileFlags(on bool) ([]string, string, error) {
	if !on {
		return nil, "", nil
	}
	port, err := testproc.FreePort()
	if err != nil {
		return nil, "", err
	}
	return []string{"--enable-profiling", "--profile-port", itoa(port)}, "http://127.0.0.1:" + itoa(port), nil
}

// captureProfile asks the pprof at base for a CPU profile of d (whole
// seconds, at least one) and writes it to file.
func captureProfile(base string, d time.Duration, file string) <-chan profile {
	ch := make(chan profile, 1)
	go func() {
		p := profile{file: file}
		p.err = func() error {
			secs := max(1, int(d/time.Second))
			ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs), nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("the sidecar's pprof does not answer (is --enable-profiling served by this build?): %w", err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("the sidecar's pprof answered HTTP %d: %.200s", resp.StatusCode, body)
			}
			return os.WriteFile(file, body, 0o644)
		}()
		ch <- p
	}()
	return ch
}

// whereTimeGoes is the report's "Where the time goes" section: the top
// entries of the CPU profile, or how to take one.
func whereTimeGoes(p profile) string {
	var b strings.Builder
	b.WriteString("\n## Where the time goes\n\n")
	switch {
	case p.path == "":
		b.WriteString("No profile in this run. `go run ./bench -profile http-sidecars-mtls` (any path with sidecars) takes a CPU profile of its first sidecar (the caller's, started with `--enable-profiling --profile-port`) during the last round's measured run, writes it to `-profile-out` (bench/cpu.prof) and puts its top entries here.\n")
	case p.err != nil:
		fmt.Fprintf(&b, "No profile of %s: %v\n", p.path, p.err)
	default:
		top, err := pprofTop(p.file)
		if err != nil {
			fmt.Fprintf(&b, "A profile of %s is in %s, but `go tool pprof` could not read it: %v\n", p.path, p.file, err)
			break
		}
		fmt.Fprintf(&b, "CPU profile of %s's first sidecar during the last round's measured run (%s; `go tool pprof -top %s`), the top entries by own time:\n\n```\n%s```\n", p.path, p.file, p.file, top)
	}
	return b.String()
}

// pprofTop is `go tool pprof -top` of file, its 25 heaviest functions.
func pprofTop(file string) (string, error) {
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=25", file).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, out)
	}
	return string(out), nil
}
