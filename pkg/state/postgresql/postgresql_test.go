package postgresql

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-run/tandem/internal/testutil/pgserver"
	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/statetest"
)

func TestMain(m *testing.M) { os.Exit(pgserver.Main(m)) }

// newStore builds a store on conn with md's metadata over the defaults.
func newStore(t *testing.T, conn string, md map[string]string) *Store {
	t.Helper()
	all := map[string]string{"connectionString": conn}
	for k, v := range md {
		all[k] = v
	}
	cfg, err := ParseMetadata(all)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New("pg", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func connect(t *testing.T, conn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func TestContract(t *testing.T) {
	conn := pgserver.Shared(t)
	var n atomic.Int64
	statetest.Run(t, func(t *testing.T) state.Store {
		// A table of its own: an empty store.
		return newStore(t, conn, map[string]string{"tableName": fmt.Sprintf("contract_%d", n.Add(1))})
	})
}

func TestParseMetadata(t *testing.T) {
	conn := "host=localhost port=5432 user=u password=secret-pw dbname=d"
	ok := []struct {
		md                       map[string]string
		table, metadata          string
		timeout, cleanupInterval time.Duration
	}{
		{map[string]string{}, "state", "dapr_metadata", 20 * time.Second, time.Hour},
		{map[string]string{"tablePrefix": "app1_", "metadataTableName": "s.md"}, "app1_state", "s.md", 20 * time.Second, time.Hour},
		{map[string]string{"tableName": "public.mystate"}, "public.mystate", "dapr_metadata", 20 * time.Second, time.Hour},
		{map[string]string{"timeout": "5"}, "state", "dapr_metadata", 5 * time.Second, time.Hour},
		{map[string]string{"timeoutInSeconds": "1m"}, "state", "dapr_metadata", time.Minute, time.Hour},
		{map[string]string{"cleanupInterval": "30"}, "state", "dapr_metadata", 20 * time.Second, 30 * time.Second},
		{map[string]string{"cleanupInterval": "10m"}, "state", "dapr_metadata", 20 * time.Second, 10 * time.Minute},
		{map[string]string{"cleanupInterval": "0"}, "state", "dapr_metadata", 20 * time.Second, 0},
		{map[string]string{"cleanupIntervalInSeconds": "-1"}, "state", "dapr_metadata", 20 * time.Second, 0},
	}
	for _, c := range ok {
		c.md["connectionString"] = conn
		cfg, err := ParseMetadata(c.md)
		if err != nil {
			t.Errorf("%v: %v", c.md, err)
			continue
		}
		if cfg.Table != c.table || cfg.MetadataTable != c.metadata || cfg.Timeout != c.timeout || cfg.CleanupInterval != c.cleanupInterval {
			t.Errorf("%v: table %q, metadata %q, timeout %v, cleanup %v", c.md, cfg.Table, cfg.MetadataTable, cfg.Timeout, cfg.CleanupInterval)
		}
	}
	bad := []struct {
		md   map[string]string
		want string
	}{
		{map[string]string{}, "connectionString is missing"},
		{map[string]string{"connectionString": ""}, "connectionString is missing"},
		{map[string]string{"connectionString": "postgres://u:secret-pw@h:notaport/d"}, "connectionString cannot be read"},
		{map[string]string{"connectionString": conn, "redisHost": "x"}, `"redisHost" is not a state.postgresql field`},
		{map[string]string{"connectionString": conn, "timeout": "500ms"}, "timeout"},
		{map[string]string{"connectionString": conn, "timeout": "soon"}, "timeout"},
		{map[string]string{"connectionString": conn, "cleanupInterval": "hourly"}, "cleanupInterval"},
		{map[string]string{"connectionString": conn, "tableName": "a", "tablePrefix": "b"}, "both set"},
		{map[string]string{"connectionString": conn, "tableName": "drop table x;"}, "tableName"},
		{map[string]string{"connectionString": conn, "tablePrefix": "1"}, "tableName"},
		{map[string]string{"connectionString": conn, "metadataTableName": "a.b.c"}, "metadataTableName"},
		{map[string]string{"connectionString": conn, "tableName": "m", "metadataTableName": "M"}, "different tables"},
		{map[string]string{"connectionString": conn, "timeout": "5", "timeoutInSeconds": "5"}, "give one"},
		{map[string]string{"connectionString": conn, "useAzureAD": "true"}, "useAzureAD"},
		{map[string]string{"connectionString": conn, "queryExecMode": "fast"}, "queryExecMode"},
		{map[string]string{"connectionString": conn, "maxConns": "-1"}, "maxConns"},
	}
	for _, c := range bad {
		_, err := ParseMetadata(c.md)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one saying %q", c.md, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "secret-pw") {
			t.Errorf("%v: the error shows the password: %v", c.md, err)
		}
	}
}

// A row daprd's state.postgresql v2 wrote reads back here, and a row
// written here has daprd's columns and schema version.
func TestDaprLayout(t *testing.T) {
	conn := pgserver.Shared(t)
	s := newStore(t, conn, nil)
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	db := connect(t, conn)
	var v string
	if err := db.QueryRow(ctx, "SELECT value FROM dapr_metadata WHERE key = 'migrations-state-v2-'").Scan(&v); err != nil || v != "1" {
		t.Fatalf("schema version under daprd's key: %q, %v; want 1", v, err)
	}
	// As daprd writes: its insert, with its defaults.
	var etag string
	if err := db.QueryRow(ctx, `INSERT INTO state (key, value, etag, expires_at) VALUES ('app||k', '"from daprd"', gen_random_uuid(), NULL) RETURNING etag::text`).Scan(&etag); err != nil {
		t.Fatal(err)
	}
	it, err := s.Get(ctx, "app||k")
	if err != nil || it == nil || string(it.Value) != `"from daprd"` || it.ETag != etag {
		t.Fatalf("Get of daprd's row = %+v, %v; want its value and etag %s", it, err, etag)
	}
	if err := s.Set(ctx, state.SetRequest{Key: "app||k", Value: []byte(`"ours"`), ETag: &etag, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	var value []byte
	var newETag string
	var ttl float64
	if err := db.QueryRow(ctx, `SELECT value, etag::text, extract(epoch from expires_at - now()) FROM state WHERE key = 'app||k'`).Scan(&value, &newETag, &ttl); err != nil {
		t.Fatal(err)
	}
	if string(value) != `"ours"` || newETag == etag || ttl < 3000 || ttl > 3600 {
		t.Errorf("row after our write: value %s, etag %s (was %s), expires in %.0fs", value, newETag, etag, ttl)
	}
	// An etag in upper case is the same uuid.
	up := strings.ToUpper(newETag)
	if err := s.Delete(ctx, state.DeleteRequest{Key: "app||k", ETag: &up}); err != nil {
		t.Errorf("Delete with the etag in upper case: %v", err)
	}
}

// daprd's v1 table has the same default name: it is refused, saying so.
func TestV1TableRefused(t *testing.T) {
	conn := pgserver.Shared(t)
	db := connect(t, conn)
	ctx := context.Background()
	if _, err := db.Exec(ctx, `CREATE TABLE state (key text NOT NULL PRIMARY KEY, value jsonb NOT NULL, isbinary boolean NOT NULL,
		insertdate timestamp with time zone NOT NULL DEFAULT now(), updatedate timestamp with time zone, expiredate timestamp with time zone)`); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, conn, nil)
	err := s.Ping(ctx)
	if err == nil || !strings.Contains(err.Error(), "v1") || !strings.Contains(err.Error(), "table state") {
		t.Fatalf("Ping on a v1 table: %v; want an error naming the table and v1", err)
	}
	if _, err := s.Get(ctx, "k"); err == nil {
		t.Error("Get on a v1 table succeeded")
	}
	// Another table is fine.
	if err := newStore(t, conn, map[string]string{"tablePrefix": "v2_"}).Ping(ctx); err != nil {
		t.Error(err)
	}
}

// Sidecars starting together on one empty database all get the tables,
// created once.
func TestConcurrentFirstUse(t *testing.T) {
	conn := pgserver.Shared(t)
	ctx := context.Background()
	const n = 6
	stores := make([]*Store, n)
	for i := range stores {
		stores[i] = newStore(t, conn, nil)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i, s := range stores {
		wg.Go(func() {
			<-start
			errs[i] = s.Set(ctx, state.SetRequest{Key: fmt.Sprintf("k%d", i), Value: []byte("v")})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("store %d: %v", i, err)
		}
	}
	var rows int
	if err := connect(t, conn).QueryRow(ctx, "SELECT count(*) FROM state").Scan(&rows); err != nil || rows != n {
		t.Errorf("state has %d rows (%v), want %d", rows, err, n)
	}
}

// Expired rows are invisible at once, and the cleanup deletes them.
func TestTTLCleanup(t *testing.T) {
	conn := pgserver.Shared(t)
	ctx := context.Background()
	s := newStore(t, conn, map[string]string{"cleanupInterval": "1"})
	db := connect(t, conn)
	must(t, s.Set(ctx, state.SetRequest{Key: "short", Value: []byte("v"), TTL: time.Second}))
	must(t, s.Set(ctx, state.SetRequest{Key: "long", Value: []byte("v")}))
	// Expire it now, without waiting: invisible at once, though there.
	if _, err := db.Exec(ctx, "UPDATE state SET expires_at = now() - interval '1 millisecond' WHERE key = 'short'"); err != nil {
		t.Fatal(err)
	}
	if it, err := s.Get(ctx, "short"); it != nil || err != nil {
		t.Fatalf("expired value read back: %+v, %v", it, err)
	}
	e := "00000000-0000-0000-0000-000000000000"
	if err := s.Set(ctx, state.SetRequest{Key: "short", Value: []byte("w"), FirstWrite: true}); err != nil {
		t.Errorf("first-write over an expired row: %v", err)
	}
	if err := s.Delete(ctx, state.DeleteRequest{Key: "nothing", ETag: &e}); !errors.Is(err, state.ErrETagMismatch) {
		t.Errorf("Delete of a missing key with an etag: %v", err)
	}
	must(t, s.Set(ctx, state.SetRequest{Key: "gone", Value: []byte("v"), TTL: time.Second}))
	// The cleanup, every second, deletes the row.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var n int
		if err := db.QueryRow(ctx, "SELECT count(*) FROM state WHERE key = 'gone'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("expired row still in the table 60s after it expired, with cleanupInterval 1s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var n int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM state WHERE key IN ('long', 'short')").Scan(&n); err != nil || n != 2 {
		t.Errorf("the cleanup deleted live rows: %d of 2 left (%v)", n, err)
	}
	var last string
	if err := db.QueryRow(ctx, "SELECT value FROM dapr_metadata WHERE key = 'last-cleanup-state-v2-state'").Scan(&last); err != nil {
		t.Errorf("no time of the last cleanup: %v", err)
	}
}

// With cleanupInterval 0 nothing is deleted in the background; a cleanup
// run by hand right after another sidecar's does nothing.
func TestCleanupOffAndShared(t *testing.T) {
	conn := pgserver.Shared(t)
	ctx := context.Background()
	off := newStore(t, conn, map[string]string{"cleanupInterval": "0"})
	if off.cfg.CleanupInterval != 0 {
		t.Fatal("cleanupInterval 0 did not turn the cleanup off")
	}
	must(t, off.Set(ctx, state.SetRequest{Key: "k", Value: []byte("v"), TTL: time.Second}))
	db := connect(t, conn)
	if _, err := db.Exec(ctx, "UPDATE state SET expires_at = now() - interval '1 second'"); err != nil {
		t.Fatal(err)
	}
	a := newStore(t, conn, map[string]string{"cleanupInterval": "1h"})
	b := newStore(t, conn, map[string]string{"cleanupInterval": "1h"})
	if n, err := a.CleanupExpired(); err != nil || n != 1 {
		t.Fatalf("first cleanup deleted %d rows (%v), want 1", n, err)
	}
	must(t, off.Set(ctx, state.SetRequest{Key: "k2", Value: []byte("v"), TTL: time.Second}))
	if _, err := db.Exec(ctx, "UPDATE state SET expires_at = now() - interval '1 second'"); err != nil {
		t.Fatal(err)
	}
	if n, err := b.CleanupExpired(); err != nil || n != 0 {
		t.Fatalf("a cleanup right after another sidecar's deleted %d rows (%v), want 0", n, err)
	}
}

// The database down: a clean error naming the server and the cause, well
// within the timeout; the store works again once the database is back.
func TestServerDown(t *testing.T) {
	srv := pgserver.Start(t)
	conn := srv.NewDatabase(t)
	ctx := context.Background()
	s := newStore(t, conn, map[string]string{"timeout": "5s"})
	must(t, s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("v")}))
	srv.Stop()
	for _, op := range []func() error{
		func() error { _, err := s.Get(ctx, "k"); return err },
		func() error { return s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("w")}) },
		func() error { return s.Delete(ctx, state.DeleteRequest{Key: "k"}) },
		func() error {
			return s.Transact(ctx, []state.Op{{Set: &state.SetRequest{Key: "k", Value: []byte("x")}}})
		},
		func() error { return s.Ping(ctx) },
	} {
		began := time.Now()
		err := op()
		if err == nil {
			t.Fatal("a call succeeded with the database down")
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("postgresql at 127.0.0.1:%d", srv.Port)) || errors.Is(err, state.ErrETagMismatch) {
			t.Errorf("error with the database down: %v", err)
		}
		if d := time.Since(began); d > 30*time.Second {
			t.Errorf("a call took %v with the database down (timeout 5s)", d)
		}
		t.Logf("database down: %v", err)
	}
	srv.Restart(t)
	deadline := time.Now().Add(60 * time.Second)
	for {
		it, err := s.Get(ctx, "k")
		if err == nil {
			if it == nil || string(it.Value) != "v" {
				t.Fatalf("after the restart: %+v", it)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store did not recover within 60s of the database's restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The tables are created at the first call even when the database was
// down at the store's start.
func TestFirstUseAfterDown(t *testing.T) {
	srv := pgserver.Start(t)
	conn := srv.NewDatabase(t)
	srv.Stop()
	ctx := context.Background()
	s := newStore(t, conn, map[string]string{"timeout": "5s"})
	if err := s.Ping(ctx); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("Ping with the database down: %v", err)
	}
	srv.Restart(t)
	if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A server that takes the connection and never answers: every call ends
// at the timeout, saying so, rather than hang.
func TestDatabaseHangs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	s := newStore(t, fmt.Sprintf("host=127.0.0.1 port=%d user=u dbname=d sslmode=disable", port), map[string]string{"timeout": "1s"})
	ctx := context.Background()
	for _, op := range []func() error{
		func() error { _, err := s.Get(ctx, "k"); return err },
		func() error { return s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("v")}) },
		func() error { return s.Ping(ctx) },
	} {
		began := time.Now()
		err := op()
		if err == nil || !strings.Contains(err.Error(), "timed out (timeout 1s)") {
			t.Errorf("call to a server that never answers: %v; want a timeout", err)
		}
		if d := time.Since(began); d > 20*time.Second {
			t.Errorf("a call took %v with a 1s timeout", d)
		}
	}
}

// Tables may be schema.table, as daprd takes them.
func TestSchemaQualifiedTables(t *testing.T) {
	conn := pgserver.Shared(t)
	ctx := context.Background()
	s := newStore(t, conn, map[string]string{"tableName": "public.q_state", "metadataTableName": "public.q_md"})
	must(t, s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("v"), TTL: time.Second}))
	db := connect(t, conn)
	if _, err := db.Exec(ctx, "UPDATE public.q_state SET expires_at = now() - interval '1 second'"); err != nil {
		t.Fatal(err)
	}
	must(t, s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("w"), FirstWrite: true}))
	if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("x"), FirstWrite: true}); !errors.Is(err, state.ErrETagMismatch) {
		t.Errorf("first-write of a live key: %v", err)
	}
	must(t, s.Set(ctx, state.SetRequest{Key: "e", Value: []byte("v"), TTL: time.Second}))
	if _, err := db.Exec(ctx, "UPDATE public.q_state SET expires_at = now() - interval '1 second' WHERE key = 'e'"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CleanupExpired(); err != nil || n != 1 {
		t.Errorf("cleanup deleted %d rows (%v), want 1", n, err)
	}
	if it := get(t, s, "k"); string(it.Value) != "w" {
		t.Errorf("k = %q", it.Value)
	}
}

func get(t *testing.T, s *Store, key string) *state.Item {
	t.Helper()
	it, err := s.Get(context.Background(), key)
	if err != nil || it == nil {
		t.Fatalf("Get(%q) = %v, %v", key, it, err)
	}
	return it
}
