// Package postgresql is the state store on PostgreSQL
// (github.com/jackc/pgx/v5), in the table layout of daprd's
// state.postgresql v2, so that data written by either reads back in the
// other:
//
//	key text PRIMARY KEY, value bytea, etag uuid,
//	created_at, updated_at, expires_at timestamp with time zone
//
// A write sets a new random etag (gen_random_uuid()); check-and-set is one
// UPDATE ... WHERE etag = $n, first-write one INSERT ... ON CONFLICT, so
// both are atomic in the database. A row whose expires_at has passed is
// invisible to every read and check at once, and deleted by a background
// cleanup every cleanupInterval. A transaction is one database transaction.
//
// The tables are created at the first call (or Ping), as daprd does: the
// metadata table (key text PRIMARY KEY, value text) records the state
// table's schema version under daprd's key, so that daprd and this store
// migrate one database once. Sidecars starting together serialize the
// migration on an advisory lock, and on daprd's lock row too.
package postgresql

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandem-run/tandem/pkg/state"
)

// schemaVersion is the state table's layout version daprd v2 records; this
// store knows that one and no later one.
const schemaVersion = 1

// Store is a PostgreSQL state store. It is safe for concurrent use.
type Store struct {
	name string // component name, for messages
	cfg  Config
	pool *pgxpool.Pool
	addr string

	ready   chan struct{} // closed once the tables are there
	migrate chan struct{} // a one-slot lock around the migration

	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup

	q queries
}

type queries struct {
	get, upsert, firstWrite, update, del, delETag, cleanup, lastCleanup string
}

// New returns a store on cfg. Nothing is connected until the first call;
// the cleanup of expired rows starts now, every cfg.CleanupInterval. name
// is the component's name.
func New(name string, cfg Config) (*Store, error) {
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg.Pool)
	if err != nil {
		return nil, fmt.Errorf("postgresql: %w", err)
	}
	s := &Store{
		name: name, cfg: cfg, pool: pool,
		addr:    net.JoinHostPort(cfg.Pool.ConnConfig.Host, strconv.Itoa(int(cfg.Pool.ConnConfig.Port))),
		ready:   make(chan struct{}),
		migrate: make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	if strings.HasPrefix(cfg.Pool.ConnConfig.Host, "/") {
		s.addr = cfg.Pool.ConnConfig.Host
	}
	t := cfg.Table
	live := "(expires_at IS NULL OR expires_at >= now())"
	exp := "now() + make_interval(secs => $3)"
	s.q = queries{
		get: "SELECT value, etag::text FROM " + t + " WHERE key = $1 AND " + live,
		upsert: "INSERT INTO " + t + " (key, value, etag, expires_at) VALUES ($1, $2, gen_random_uuid(), " + exp + ")" +
			" ON CONFLICT (key) DO UPDATE SET value = $2, updated_at = now(), etag = gen_random_uuid(), expires_at = " + exp,
		// First-write without an etag replaces a row only when it has
		// expired (and not yet been cleaned up).
		firstWrite: "INSERT INTO " + t + " AS t (key, value, etag, expires_at) VALUES ($1, $2, gen_random_uuid(), " + exp + ")" +
			" ON CONFLICT (key) DO UPDATE SET value = $2, updated_at = now(), etag = gen_random_uuid(), expires_at = " + exp +
			" WHERE t.expires_at IS NOT NULL AND t.expires_at < now()",
		update: "UPDATE " + t + " SET value = $2, updated_at = now(), etag = gen_random_uuid(), expires_at = " + exp +
			" WHERE key = $1 AND etag = $4::uuid AND " + live,
		del:     "DELETE FROM " + t + " WHERE key = $1",
		delETag: "DELETE FROM " + t + " WHERE key = $1 AND etag = $2::uuid AND " + live,
		cleanup: "DELETE FROM " + t + " WHERE expires_at IS NOT NULL AND expires_at < now()",
		// Sidecars sharing the table clean it once per interval between
		// them: the one that moves the time of the last cleanup cleans. The
		// time is kept per state table.
		lastCleanup: "INSERT INTO " + cfg.MetadataTable + " AS m (key, value) VALUES ($1, now()::text) ON CONFLICT (key) DO UPDATE SET value = now()::text" +
			" WHERE (EXTRACT('epoch' FROM now() - m.value::timestamp with time zone) * 1000)::bigint > $2",
	}
	if cfg.CleanupInterval > 0 {
		s.wg.Add(1)
		go s.cleanupLoop()
	}
	return s, nil
}

// Addr is the database server's address, for telemetry.
func (s *Store) Addr() string { return s.addr }

// Close stops the cleanup and closes the connections.
func (s *Store) Close() error {
	s.stopped.Do(func() {
		close(s.stop)
		s.wg.Wait()
		s.pool.Close()
	})
	return nil
}

// Ping checks that the database answers and that the tables are there,
// creating them if need be (state.Pinger).
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.ensure(ctx); err != nil {
		return err
	}
	return s.wrap("ping", s.pool.Ping(ctx))
}

// wrap says which server and operation failed, and why, in words: the
// database down, a timeout. It does not name the key: keys reach the store
// prefixed, and the caller names the key as its user knows it.
func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Errorf("postgresql at %s: %s timed out (timeout %v): %w", s.addr, op, s.cfg.Timeout, err)
	case refused(err):
		return fmt.Errorf("postgresql at %s: %s: the database refused the connection (check the user, password and database of metadata connectionString): %w", s.addr, op, err)
	case isConnect(err):
		return fmt.Errorf("postgresql at %s: %s: the database is unreachable: %w", s.addr, op, err)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return fmt.Errorf("postgresql at %s: %s: the connection to the database was lost: %w", s.addr, op, err)
	}
	return fmt.Errorf("postgresql at %s: %s: %w", s.addr, op, err)
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// refused says whether the server answered a connection with an error:
// authentication failed, no such database or role, no entry in
// pg_hba.conf. A server that is starting up or shutting down is not
// refusing: it is unreachable for now.
func refused(err error) bool {
	var ce *pgconn.ConnectError
	var pe *pgconn.PgError
	return errors.As(err, &ce) && errors.As(err, &pe) &&
		(strings.HasPrefix(pe.Code, "28") || pe.Code == "3D000")
}

func isConnect(err error) bool {
	var ce *pgconn.ConnectError
	var ne *net.OpError
	return errors.As(err, &ce) || errors.As(err, &ne)
}

// ctx bounds one operation by the store's timeout.
func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// Get returns the value of key, or nil when missing or expired.
func (s *Store) Get(ctx context.Context, key string) (*state.Item, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.ensure(ctx); err != nil {
		return nil, err
	}
	var it state.Item
	err := s.pool.QueryRow(ctx, s.q.get, key).Scan(&it.Value, &it.ETag)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, s.wrap("get", err)
	}
	if it.Value == nil {
		it.Value = []byte{}
	}
	return &it, nil
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Set saves a value.
func (s *Store) Set(ctx context.Context, req state.SetRequest) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.ensure(ctx); err != nil {
		return err
	}
	return s.set(ctx, s.pool, req)
}

func (s *Store) set(ctx context.Context, db execer, req state.SetRequest) error {
	var ttl *float64
	if req.TTL > 0 {
		secs := float64(ttlSeconds(req.TTL))
		ttl = &secs
	}
	value := req.Value
	if value == nil {
		value = []byte{} // the column is NOT NULL, as daprd's
	}
	var tag pgconn.CommandTag
	var err error
	switch {
	case req.ETag != nil:
		etag, cerr := checkETag(*req.ETag)
		if cerr != nil {
			return cerr
		}
		tag, err = db.Exec(ctx, s.q.update, req.Key, value, ttl, etag)
	case req.FirstWrite:
		tag, err = db.Exec(ctx, s.q.firstWrite, req.Key, value, ttl)
	default:
		tag, err = db.Exec(ctx, s.q.upsert, req.Key, value, ttl)
	}
	if err != nil {
		return s.wrap("set", err)
	}
	if tag.RowsAffected() == 0 {
		if req.ETag == nil {
			return fmt.Errorf("the key exists and first-write needs an etag to update it: %w", state.ErrETagMismatch)
		}
		return fmt.Errorf("etag does not match: %w", state.ErrETagMismatch)
	}
	return nil
}

// Delete deletes a value; a missing key is no error without an etag.
func (s *Store) Delete(ctx context.Context, req state.DeleteRequest) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.ensure(ctx); err != nil {
		return err
	}
	return s.delete(ctx, s.pool, req)
}

func (s *Store) delete(ctx context.Context, db execer, req state.DeleteRequest) error {
	if req.ETag == nil {
		_, err := db.Exec(ctx, s.q.del, req.Key)
		return s.wrap("delete", err)
	}
	etag, err := checkETag(*req.ETag)
	if err != nil {
		return err
	}
	tag, err := db.Exec(ctx, s.q.delETag, req.Key, etag)
	if err != nil {
		return s.wrap("delete", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("etag does not match: %w", state.ErrETagMismatch)
	}
	return nil
}

// Transact applies ops in order in one database transaction: the first
// failing check rolls back every operation before it.
func (s *Store) Transact(ctx context.Context, ops []state.Op) error {
	if len(ops) == 0 {
		return nil
	}
	for i, op := range ops { // an etag that is no uuid fails before the database
		if op.Set != nil && op.Set.ETag != nil {
			if _, err := checkETag(*op.Set.ETag); err != nil {
				return fmt.Errorf("operation %d: %w", i, err)
			}
		}
		if op.Delete != nil && op.Delete.ETag != nil {
			if _, err := checkETag(*op.Delete.ETag); err != nil {
				return fmt.Errorf("operation %d: %w", i, err)
			}
		}
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.ensure(ctx); err != nil {
		return err
	}
	what := fmt.Sprintf("transaction of %d operations", len(ops))
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.wrap(what, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for i, op := range ops {
		var err error
		var key string
		if op.Set != nil {
			key, err = op.Set.Key, s.set(ctx, tx, *op.Set)
		} else {
			key, err = op.Delete.Key, s.delete(ctx, tx, *op.Delete)
		}
		if errors.Is(err, state.ErrETagMismatch) {
			return fmt.Errorf("operation %d: key %q: %w", i, key, err)
		}
		if err != nil {
			return fmt.Errorf("operation %d: %w", i, err)
		}
	}
	return s.wrap(what+": commit", tx.Commit(ctx))
}

// ensure creates the tables at the first call, once; a failure is tried
// again by the next call.
func (s *Store) ensure(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	default:
	}
	select {
	case s.migrate <- struct{}{}:
	case <-ctx.Done():
		return s.wrap("creating the tables", ctx.Err())
	}
	defer func() { <-s.migrate }()
	select {
	case <-s.ready:
		return nil
	default:
	}
	if err := s.migrateTables(ctx); err != nil {
		return err
	}
	close(s.ready)
	return nil
}

// migrationLock is the advisory lock sidecars take around the migration:
// the hash of the metadata table's name, so that stores of different
// metadata tables do not wait on each other.
func (s *Store) migrationLock() int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("state.postgresql migrations " + strings.ToLower(s.cfg.MetadataTable)))
	return int64(h.Sum64())
}

// migrationKey is the metadata table's key of the state table's schema
// version: daprd's, "migrations-state-v2-<tablePrefix>", for a table named
// <prefix>state; for another tableName, one that no prefix gives.
func (s *Store) migrationKey() string {
	t := strings.ToLower(s.cfg.Table)
	if p, ok := strings.CutSuffix(t, DefaultTable); ok {
		return "migrations-state-v2-" + p
	}
	return "migrations-state-v2-table:" + t
}

// migrateTables creates the metadata table and the state table in one
// transaction, under an advisory lock (so that sidecars starting together
// do not race on CREATE TABLE) and daprd's lock row (so that a daprd
// migrating the same database waits for it, and it for daprd), records
// the schema version, and checks the state table's layout.
func (s *Store) migrateTables(ctx context.Context) error {
	fail := func(what string, err error) error { return s.wrap("creating the tables: "+what, err) }
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fail("begin", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.migrationLock()); err != nil {
		return fail("advisory lock", err)
	}
	md := s.cfg.MetadataTable
	if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+md+" (key text NOT NULL PRIMARY KEY, value text NOT NULL)"); err != nil {
		return fail("metadata table "+md, err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+md+" (key, value) VALUES ('lock', 'lock') ON CONFLICT (key) DO NOTHING"); err != nil {
		return fail("lock row of "+md, err)
	}
	if _, err := tx.Exec(ctx, "SELECT value FROM "+md+" WHERE key = 'lock' FOR UPDATE"); err != nil {
		return fail("lock row of "+md, err)
	}
	key := s.migrationKey()
	var v string
	version := 0
	switch err := tx.QueryRow(ctx, "SELECT value FROM "+md+" WHERE key = $1", key).Scan(&v); {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fail("reading the schema version", err)
	default:
		if version, err = strconv.Atoi(v); err != nil || version < 0 {
			return fmt.Errorf("postgresql at %s: %s holds schema version %q under %q for table %s; want a whole number", s.addr, md, v, key, s.cfg.Table)
		}
	}
	if version > schemaVersion {
		return fmt.Errorf("postgresql at %s: table %s has schema version %d (%s, key %q), newer than the %d this sidecar knows", s.addr, s.cfg.Table, version, md, key, schemaVersion)
	}
	if version < 1 {
		t := s.cfg.Table
		// IF NOT EXISTS: a table made by hand, or of another layout, is
		// then checked below and refused with a reason.
		if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+t+` (
  key text NOT NULL PRIMARY KEY,
  value bytea NOT NULL,
  etag uuid NOT NULL DEFAULT gen_random_uuid(),
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  updated_at timestamp with time zone,
  expires_at timestamp with time zone
)`); err != nil {
			return fail("state table "+t, err)
		}
		if err := s.checkLayout(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "CREATE INDEX IF NOT EXISTS "+indexName(t)+" ON "+t+" (expires_at)"); err != nil {
			return fail("index of "+t, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+md+" (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2", key, strconv.Itoa(schemaVersion)); err != nil {
			return fail("recording the schema version", err)
		}
	}
	if version >= 1 {
		if err := s.checkLayout(ctx, tx); err != nil {
			return err
		}
	}
	return fail("commit", tx.Commit(ctx))
}

// indexName is the expires_at index's name, as PostgreSQL names daprd's
// unnamed one: <table>_expires_at_idx, in the table's schema.
func indexName(t string) string {
	if i := strings.LastIndexByte(t, '.'); i >= 0 {
		t = t[i+1:]
	}
	return t + "_expires_at_idx"
}

// checkLayout refuses a state table whose columns are not v2's: daprd's
// v1 table (value jsonb, isbinary, etag from xmin) above all, which has
// the same default name.
func (s *Store) checkLayout(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped", s.cfg.Table)
	if err != nil {
		return s.wrap("reading the layout of table "+s.cfg.Table, err)
	}
	cols := map[string]string{}
	for rows.Next() {
		var n, t string
		if err := rows.Scan(&n, &t); err != nil {
			return s.wrap("reading the layout of table "+s.cfg.Table, err)
		}
		cols[n] = t
	}
	if err := rows.Err(); err != nil {
		return s.wrap("reading the layout of table "+s.cfg.Table, err)
	}
	if _, v1 := cols["isbinary"]; v1 || cols["value"] == "jsonb" {
		return fmt.Errorf("postgresql at %s: table %s has the layout of daprd's state.postgresql v1 (value jsonb, isbinary), which this sidecar does not read; v2's is key text, value bytea, etag uuid, expires_at: give this component another table (tablePrefix or tableName), or move the data", s.addr, s.cfg.Table)
	}
	want := map[string]string{"key": "text", "value": "bytea", "etag": "uuid", "expires_at": "timestamp with time zone"}
	for c, t := range want {
		if cols[c] != t {
			return fmt.Errorf("postgresql at %s: table %s is not a state.postgresql v2 table: column %s is %q, want %s (v2's layout: key text, value bytea, etag uuid, expires_at timestamp with time zone): give this component another table (tablePrefix or tableName)", s.addr, s.cfg.Table, c, cols[c], t)
		}
	}
	return nil
}

// cleanupLoop deletes expired rows every CleanupInterval until Close.
func (s *Store) cleanupLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			// Errors (the database down) wait for the next round: expired
			// rows stay invisible meanwhile.
			_, _ = s.CleanupExpired()
		}
	}
}

// CleanupExpired deletes the expired rows, unless a sidecar sharing the
// table did less than a cleanup interval ago; it returns how many it
// deleted. It gives up when the store is closed.
func (s *Store) CleanupExpired() (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	{
		ectx, ecancel := s.ctx(ctx)
		err := s.ensure(ectx)
		ecancel()
		if err != nil {
			return 0, err
		}
	}
	ms := max(s.cfg.CleanupInterval.Milliseconds()-100, 0)
	lctx, lcancel := s.ctx(ctx)
	tag, err := s.pool.Exec(lctx, s.q.lastCleanup, "last-cleanup-state-v2-"+strings.ToLower(s.cfg.Table), ms)
	lcancel()
	if err != nil {
		return 0, s.wrap("cleanup", err)
	}
	if tag.RowsAffected() == 0 {
		return 0, nil // another sidecar cleaned up lately
	}
	tag, err = s.pool.Exec(ctx, s.q.cleanup)
	if err != nil {
		return 0, s.wrap("cleanup", err)
	}
	return tag.RowsAffected(), nil
}

// checkETag reads an etag: the uuids this store issues (and daprd's v2),
// in lower case. Anything else matches no row: a mismatch.
func checkETag(etag string) (string, error) {
	bad := fmt.Errorf("etag %q does not match: this store's etags are uuids: %w", etag, state.ErrETagMismatch)
	if len(etag) != 36 {
		return "", bad
	}
	for i, r := range etag {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if r != '-' {
				return "", bad
			}
		case r >= '0' && r <= '9', r >= 'a' && r <= 'f', r >= 'A' && r <= 'F':
		default:
			return "", bad
		}
	}
	return strings.ToLower(etag), nil
}

// ttlSeconds is d in whole seconds, rounded up, as the TTL of daprd's
// ttlInSeconds.
func ttlSeconds(d time.Duration) int64 {
	n := int64(d / time.Second)
	if d%time.Second != 0 {
		n++
	}
	return n
}

var (
	_ state.Store         = (*Store)(nil)
	_ state.Transactional = (*Store)(nil)
	_ state.Pinger        = (*Store)(nil)
)
