package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/internal/testutil/pgserver"
	"github.com/tandem-run/tandem/internal/testutil/proc"
)

// A state.postgresql v2 Component through a real sidecar: save, get with
// its ETag (the row's uuid), a stale ETag refused, the database down and
// back.
func TestStatePostgreSQLComponent(t *testing.T) {
	srv := pgserver.Start(t)
	conn := srv.NewDatabase(t)
	dir := t.TempDir()
	yaml := "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.postgresql\n  version: v2\n  metadata:\n" +
		"  - name: connectionString\n    value: " + strconv.Quote(conn) + "\n  - name: timeout\n    value: \"5s\"\n"
	if err := os.WriteFile(filepath.Join(dir, "statestore.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	s := w.sidecar("pgapp", 0, "--resources-path", dir)
	resp, b := do(t, "POST", s.url+"/v1.0/state/statestore", strings.NewReader(`[{"key":"k","value":{"n":1}}]`), nil)
	if resp.StatusCode != 204 {
		t.Fatalf("save: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, "GET", s.url+"/v1.0/state/statestore/k", nil, nil)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || string(b) != `{"n":1}` || len(etag) != 36 {
		t.Fatalf("get: %d %s, ETag %q", resp.StatusCode, b, etag)
	}
	// The row is daprd's layout, under the app id prefix.
	ctx := context.Background()
	db, err := pgx.Connect(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var value []byte
	var rowETag string
	if err := db.QueryRow(ctx, "SELECT value, etag::text FROM state WHERE key = 'pgapp||k'").Scan(&value, &rowETag); err != nil || string(value) != `{"n":1}` || rowETag != etag {
		t.Fatalf("row pgapp||k: %s %s, %v", value, rowETag, err)
	}
	// A save with the ETag succeeds, the same ETag again is stale.
	for i, want := range []int{204, 409} {
		body := `[{"key":"k","value":` + strconv.Itoa(i) + `,"etag":"` + etag + `"}]`
		if resp, b = do(t, "POST", s.url+"/v1.0/state/statestore", strings.NewReader(body), nil); resp.StatusCode != want {
			t.Errorf("save %d with etag: %d %s, want %d", i, resp.StatusCode, b, want)
		}
	}
	_, b = do(t, "GET", s.url+"/v1.0/metadata", nil, nil)
	if !strings.Contains(string(b), `"name":"statestore","type":"state.postgresql","version":"v2"`) {
		t.Errorf("metadata: %s", b)
	}
	// The database down: a clean 500 naming it, within the timeout.
	srv.Stop()
	start := time.Now()
	resp, b = do(t, "GET", s.url+"/v1.0/state/statestore/k", nil, nil)
	if resp.StatusCode != 500 || !strings.Contains(string(b), "ERR_STATE_GET") || !strings.Contains(string(b), "127.0.0.1:"+strconv.Itoa(srv.Port)) {
		t.Errorf("with the database down: %d %s", resp.StatusCode, b)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("failing request took %s", d)
	}
	srv.Restart(t)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, b = do(t, "GET", s.url+"/v1.0/state/statestore/k", nil, http.Header{})
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: %d %s", resp.StatusCode, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The password of a state.postgresql connection string is in no answer
// and no log line of the sidecar: not when the server refuses it, nor
// when the string cannot be read, which stops the sidecar naming the
// Component and the field.
func TestStatePostgreSQLPasswordNeverShown(t *testing.T) {
	const pw = "Secr3t-pw_x"
	srv := pgserver.Start(t)
	cs := srv.PasswordUser(t, pw)
	component := func(conn string) string {
		dir := t.TempDir()
		yaml := "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.postgresql\n  version: v2\n  metadata:\n" +
			"  - name: connectionString\n    value: " + strconv.Quote(conn) + "\n  - name: timeout\n    value: \"5s\"\n"
		if err := os.WriteFile(filepath.Join(dir, "statestore.yaml"), []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	w := newWorld(t)
	s := w.sidecar("pgwrong", 0, "--resources-path", component(cs+" password="+pw+"-wrong"))
	for _, method := range []string{"GET", "POST"} {
		var body io.Reader
		url := s.url + "/v1.0/state/statestore/k"
		if method == "POST" {
			url, body = s.url+"/v1.0/state/statestore", strings.NewReader(`[{"key":"k","value":1}]`)
		}
		resp, b := do(t, method, url, body, nil)
		if resp.StatusCode != 500 || !strings.Contains(string(b), "refused the connection") || strings.Contains(string(b), "Secr3t") {
			t.Errorf("%s with a wrong password: %d %s", method, resp.StatusCode, b)
		}
	}
	s.Stop(syscall.SIGTERM, 10*time.Second)
	if out := s.Out.String(); strings.Contains(out, "Secr3t") {
		t.Errorf("the sidecar's log shows the password:\n%s", out)
	}
	bad := proc.For(t).Start("sidecar pgbad", sidecarBin, nil, "--app-id", "pgbad", "--dapr-http-port", "0", "--dapr-grpc-port", "0",
		"--dapr-internal-grpc-port", "0", "--metrics-port", "0", "--registry-dir", w.registry, "--log-level", "debug",
		"--resources-path", component("postgres://app:"+pw+"@db:port/state"))
	if code := proc.For(t).ExitCode(bad, 20*time.Second); code == 0 || !strings.Contains(bad.Out.String(), "metadata connectionString cannot be read") ||
		!strings.Contains(bad.Out.String(), "statestore") || strings.Contains(bad.Out.String(), "Secr3t") {
		t.Errorf("an unreadable connection string: exit %d:\n%s", code, bad.Out.String())
	}
}
