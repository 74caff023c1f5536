package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/internal/testutil/pgserver"
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
