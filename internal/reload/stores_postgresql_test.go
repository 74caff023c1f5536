package reload

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/internal/testutil/pgserver"
	"github.com/tandem-run/tandem/pkg/state"
)

func postgresYAML(name, conn string, md ...string) []byte {
	b := "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: " + name + "\nspec:\n  type: state.postgresql\n  version: v2\n  metadata:\n" +
		"  - name: connectionString\n    value: " + strconv.Quote(conn) + "\n"
	for i := 0; i+1 < len(md); i += 2 {
		b += "  - name: " + md[i] + "\n    value: " + strconv.Quote(md[i+1]) + "\n"
	}
	return []byte(b)
}

// A state.postgresql Component reloads as other stores do: one whose table
// is daprd's v1 layout is not put in force, saying why, and the store in
// force keeps serving; a good one then replaces it.
func TestPostgreSQLStoreReload(t *testing.T) {
	ctx := context.Background()
	srv := pgserver.Start(t)
	conn := srv.NewDatabase(t)
	db, err := pgx.Connect(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, `CREATE TABLE state (key text NOT NULL PRIMARY KEY, value jsonb NOT NULL, isbinary boolean NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	g := &storeRig{svc: state.NewService("front", ""), m: testMetrics()}
	t.Cleanup(func() { _ = g.svc.Close() })
	// A ping bound generous enough for a busy machine's first connection.
	g.k = newComponentKind("front", "", log, map[string]componentType{"state": newStores(nil, log, g.m, 30*time.Second, false)})
	put(t, g.k, docOf("statestore.yaml", memoryYAML("statestore")))
	if err := g.k.start(ctx, Targets{State: g.svc}); err != nil {
		t.Fatal(err)
	}

	put(t, g.k, docOf("statestore.yaml", postgresYAML("statestore", conn)))
	g.k.apply(ctx, false)
	if s, _ := g.store("statestore"); s.Type != "state.in-memory" {
		t.Fatalf("in force: %q; want the in-memory store, the v1 table refused", s.Type)
	}
	if got := g.failure("statestore"); !strings.Contains(got, "v1") || !strings.Contains(got, "table state") {
		t.Errorf("failure %q; want it to name the table and daprd's v1 layout", got)
	}

	put(t, g.k, docOf("statestore.yaml", postgresYAML("statestore", conn, "tablePrefix", "v2_")))
	g.k.apply(ctx, false)
	if s, _ := g.store("statestore"); s.Type != "state.postgresql" || g.failure("statestore") != "" {
		t.Fatalf("in force: %q, failure %q; want the postgresql store", s.Type, g.failure("statestore"))
	}
	if err := g.svc.Save(ctx, "statestore", []state.SetRequest{{Key: "k", Value: []byte(`"v"`)}}); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := db.QueryRow(ctx, "SELECT convert_from(value, 'UTF8') FROM v2_state WHERE key = 'front||k'").Scan(&v); err != nil || v != `"v"` {
		t.Errorf("v2_state holds %q, %v", v, err)
	}
}
