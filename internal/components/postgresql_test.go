package components

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/internal/testutil/pgserver"
	"github.com/tandem-run/tandem/pkg/state"
)

func TestMain(m *testing.M) { os.Exit(pgserver.Main(m)) }

func postgresYAML(version string, md ...string) []byte {
	b := "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pg\nspec:\n  type: state.postgresql\n"
	if version != "" {
		b += "  version: " + version + "\n"
	}
	b += "  metadata:\n"
	for i := 0; i+1 < len(md); i += 2 {
		b += "  - name: " + md[i] + "\n    value: \"" + md[i+1] + "\"\n"
	}
	return []byte(b)
}

// v2 is the one version of state.postgresql; v1, and no version (v1 to
// daprd), are refused, naming the difference.
func TestPostgreSQLVersions(t *testing.T) {
	for _, c := range []struct{ version, want string }{
		{"v1", "spec.version v1 is not supported"},
		{"", "spec.version is missing, which daprd takes as v1"},
		{"v3", `spec.version "v3" of state.postgresql is not supported; use v2`},
	} {
		_, err := Parse(postgresYAML(c.version, "connectionString", "host=localhost"), "pg.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "set spec.version: v2") && c.version != "v3" {
			t.Errorf("version %q: %v; want an error saying %q", c.version, err, c.want)
		}
	}
	if _, err := Parse(postgresYAML("v2", "connectionString", "host=localhost"), "pg.yaml"); err != nil {
		t.Error(err)
	}
	// v2 is state.postgresql's alone.
	b := []byte("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: s\nspec:\n  type: state.redis\n  version: v2\n")
	if _, err := Parse(b, "r.yaml"); err == nil {
		t.Error("state.redis v2 accepted")
	}
	if TypeVersion("state.postgresql") != "v2" || TypeVersion("state.redis") != "v1" {
		t.Error("TypeVersion")
	}
}

func TestPostgreSQLMissingConnectionString(t *testing.T) {
	comps, err := Parse(postgresYAML("v2", "tableName", "s"), "pg.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(comps[0], nil)
	if err == nil || !strings.Contains(err.Error(), "connectionString is missing") || !strings.Contains(err.Error(), `component "pg"`) {
		t.Fatalf("Build without connectionString: %v", err)
	}
}

// A connection string that cannot be read is refused at load, naming the
// component and the field, without the password it holds.
func TestPostgreSQLUnreadableConnectionString(t *testing.T) {
	comps, err := Parse(postgresYAML("v2", "connectionString", "postgres://app:Secr3t-pw@db:port/state"), "pg.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(comps[0], nil)
	if err == nil || !strings.Contains(err.Error(), `component "pg"`) || !strings.Contains(err.Error(), "metadata connectionString cannot be read") || strings.Contains(err.Error(), "Secr3t") {
		t.Fatalf("Build with an unreadable connectionString: %v", err)
	}
}

// A Component builds a store that saves, reads back with its ETag, and
// prefixes keys as state.redis does.
func TestPostgreSQLComponent(t *testing.T) {
	conn := pgserver.Shared(t)
	comps, err := Parse(postgresYAML("v2", "connectionString", conn, "keyPrefix", "name"), "pg.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sc, err := Build(comps[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore(sc)
	ctx := context.Background()
	if err := sc.Store.(state.Pinger).Ping(ctx); err != nil {
		t.Fatal(err)
	}
	svc := state.NewService("myapp", "")
	if err := svc.Add(sc); err != nil {
		t.Fatal(err)
	}
	if err := svc.Save(ctx, "pg", []state.SetRequest{{Key: "k", Value: []byte(`{"n":1}`)}}); err != nil {
		t.Fatal(err)
	}
	it, err := svc.Get(ctx, "pg", "k")
	if err != nil || it == nil || string(it.Value) != `{"n":1}` || len(it.ETag) != 36 {
		t.Fatalf("Get = %+v, %v", it, err)
	}
	db, err := pgx.Connect(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var etag string
	if err := db.QueryRow(ctx, "SELECT etag::text FROM state WHERE key = 'pg||k'").Scan(&etag); err != nil || etag != it.ETag {
		t.Errorf("row pg||k: etag %q (%v), want %q", etag, err, it.ETag)
	}
}
