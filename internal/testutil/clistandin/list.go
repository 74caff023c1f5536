package clistandin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// App is a row of `dapr list`: what `dapr stop` decides on.
type App struct {
	AppID           string
	HTTPPort        int
	GRPCPort        int
	AppPort         int
	Command         string // appCommand of the metadata
	DaprdPID        int    // the sidecar's process
	CLIPID          int    // cliPID of the metadata: the `dapr run` that started it
	AppPID          int    // appPID of the metadata
	RunTemplatePath string // runTemplatePath: the run file of `dapr run -f`
	RunTemplateName string
}

// List is `dapr list`: every process named name (the CLI looks for "daprd")
// is a sidecar. Its app id, ports and Unix socket folder come from its
// command line, read as the CLI reads it (split at spaces, a flag's value
// being the next word unless that starts with "--"); the rest from its
// metadata API, GET /v1.0/metadata on its HTTP port or socket, whose
// extended keys are the CLI's (cliPID, appPID, appCommand, runTemplatePath,
// runTemplateName). A sidecar whose metadata cannot be read is listed
// without them, as the CLI lists it.
func List(name string) ([]App, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []App
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", p.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != name {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		items := strings.Fields(strings.ReplaceAll(string(cmdline), "\x00", " "))
		args := map[string]string{}
		for i := 1; i < len(items)-1; {
			if !strings.HasPrefix(items[i+1], "--") {
				args[items[i]] = items[i+1]
				i += 2
			} else {
				args[items[i]] = ""
				i++
			}
		}
		a := App{
			AppID:    args["--app-id"],
			HTTPPort: intArg(args, "--dapr-http-port", 3500),
			GRPCPort: intArg(args, "--dapr-grpc-port", 50001),
			AppPort:  intArg(args, "--app-port", 0),
			DaprdPID: pid,
		}
		if a.AppID == "" {
			continue
		}
		if ext, err := extended(a.HTTPPort, a.AppID, args["--unix-domain-socket"]); err == nil {
			a.Command = ext["appCommand"]
			a.CLIPID, _ = strconv.Atoi(ext["cliPID"])
			a.AppPID, _ = strconv.Atoi(ext["appPID"])
			a.RunTemplatePath = ext["runTemplatePath"]
			a.RunTemplateName = ext["runTemplateName"]
		}
		out = append(out, a)
	}
	return out, nil
}

func intArg(args map[string]string, name string, def int) int {
	if n, err := strconv.Atoi(args[name]); err == nil {
		return n
	}
	return def
}

// client is an HTTP client to a sidecar's API: its port on 127.0.0.1, or,
// with a socket folder, its HTTP socket there (as the CLI names it).
func client(appID, socketDir string) *http.Client {
	c := &http.Client{Timeout: 5 * time.Second}
	if socketDir != "" {
		sock := filepath.Join(socketDir, "dapr-"+appID+"-http.socket")
		c.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}
	}
	return c
}

func apiURL(httpPort int, path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(httpPort) + path
}

func extended(httpPort int, appID, socketDir string) (map[string]string, error) {
	resp, err := client(appID, socketDir).Get(apiURL(httpPort, "/v1.0/metadata"))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var m struct {
		Extended map[string]string `json:"extended"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return nil, err
	}
	return m.Extended, nil
}

// Put is what `dapr run` does once the app has started: PUT
// /v1.0/metadata/{key} with the value as the body (cliPID, appPID,
// appCommand, and for a run file runTemplatePath, runTemplateName). Unlike
// the CLI, which only warns, it returns an error for an answer other than
// 204.
func Put(httpPort int, appID, socketDir, key, value string) error {
	req, err := http.NewRequest(http.MethodPut, apiURL(httpPort, "/v1.0/metadata/"+key), strings.NewReader(value))
	if err != nil {
		return err
	}
	resp, err := client(appID, socketDir).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("PUT metadata %q: %d %s", key, resp.StatusCode, b)
	}
	return nil
}

// Stop is `dapr stop --app-id appID`: SIGTERM to the `dapr run` that
// started the app, which stops the sidecar and the app; to the sidecar
// itself when no CLI started it or that CLI runs other apps too.
func Stop(apps []App, appID string) error {
	counts := map[int]int{}
	for _, a := range apps {
		counts[a.CLIPID]++
	}
	for _, a := range apps {
		if a.AppID != appID {
			continue
		}
		pid := a.CLIPID
		if pid == 0 || counts[pid] > 1 {
			pid = a.DaprdPID
		}
		return syscall.Kill(pid, syscall.SIGTERM)
	}
	return fmt.Errorf("couldn't find app id %s", appID)
}

// StopRunFile is `dapr stop -f <run file>`: SIGINT to the process group of
// the `dapr run -f` that started the apps of that run file, which holds the
// CLI, its sidecars and their apps.
func StopRunFile(apps []App, runFile string) error {
	for _, a := range apps {
		if a.RunTemplatePath != runFile || a.CLIPID == 0 {
			continue
		}
		pgid, err := syscall.Getpgid(a.CLIPID)
		if err != nil {
			return syscall.Kill(a.CLIPID, syscall.SIGTERM)
		}
		if pgid == syscall.Getpgrp() {
			// The CLI runs in its own group; this one is the caller's.
			return fmt.Errorf("the process group of cliPID %d is the caller's own; not signalling it", a.CLIPID)
		}
		return syscall.Kill(-pgid, syscall.SIGINT)
	}
	return fmt.Errorf("couldn't find apps with run file %q", runFile)
}
