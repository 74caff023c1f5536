package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/pgserver"
	testproc "github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/pkg/state/postgresql"
	"github.com/tandem-run/tandem/pkg/state/redis"
)

// The state backends profile (-state-backends FILE) reads and writes one
// key of o.Size bytes through a sidecar whose statestore is
// state.postgresql, and one whose statestore is a 3-master Redis Cluster,
// each beside its client called directly in the same rounds: pgx running
// the store's own queries, and go-redis's ClusterClient GET and SET. It
// writes the section stateBackendsTitle of FILE, the rest kept.

const stateBackendsTitle = "## State on PostgreSQL and on a Redis Cluster"

// backendPaths in the order a round runs them.
var backendPaths = []path{
	{name: "pg-get-direct", group: "postgresql get", baseline: true, about: "pgx (a pool configured from the Component's metadata as the store's) running the store's read: `SELECT value, etag::text ... WHERE key = $1` and not expired", setup: pgDirect(false)},
	{name: "pg-get-sidecar", group: "postgresql get", sidecars: true, about: "`GET /v1.0/state/statestore/k` on a sidecar whose statestore is `state.postgresql` v2", setup: backendSidecar(func(e *env) string { return e.pgResources }, false)},
	{name: "pg-save-direct", group: "postgresql save", baseline: true, about: "pgx running the store's save: `INSERT ... ON CONFLICT (key) DO UPDATE` with a new etag", setup: pgDirect(true)},
	{name: "pg-save-sidecar", group: "postgresql save", sidecars: true, about: "`POST /v1.0/state/statestore` of one item on that sidecar", setup: backendSidecar(func(e *env) string { return e.pgResources }, true)},
	{name: "cluster-get-direct", group: "cluster get", baseline: true, about: "go-redis `ClusterClient` (configured as the store's) `GET` of a 1 KB string", setup: clusterDirect(false)},
	{name: "cluster-get-sidecar", group: "cluster get", sidecars: true, about: "`GET /v1.0/state/statestore/k` on a sidecar whose statestore is `state.redis` with `redisType: cluster`", setup: backendSidecar(func(e *env) string { return e.clusterResources }, false)},
	{name: "cluster-save-direct", group: "cluster save", baseline: true, about: "go-redis `ClusterClient` `SET` of a 1 KB string", setup: clusterDirect(true)},
	{name: "cluster-save-sidecar", group: "cluster save", sidecars: true, about: "`POST /v1.0/state/statestore` of one item on that sidecar", setup: backendSidecar(func(e *env) string { return e.clusterResources }, true)},
}

func stateBackends(o options, out string) error {
	e, cleanup, err := newEnv(o)
	if err != nil {
		return err
	}
	defer cleanup()
	pg, err := e.startPostgreSQL()
	if err != nil {
		return err
	}
	defer pg.Close()
	cluster, err := e.startCluster()
	if err != nil {
		return err
	}
	defer stopAll(cluster)
	var results []*result
	base := map[string]*result{}
	for _, p := range backendPaths {
		r := &result{path: p}
		if p.baseline {
			base[p.group] = r
		} else {
			r.base = base[p.group]
		}
		results = append(results, r)
	}
	if err := e.rounds(results, ""); err != nil {
		return err
	}
	section := stateBackendsReport(o, results)
	fmt.Print(section)
	return writeSection(out, stateBackendsTitle, section)
}

func stateBackendsReport(o options, results []*result) string {
	var b strings.Builder
	b.WriteString(stateBackendsTitle + "\n\n")
	fmt.Fprintf(&b, "`go run ./bench -state-backends bench/RESULTS.md -rounds %d -rate %d -duration %s -warmup %s -max-duration %s` (`make bench-state-backends` runs it with the defaults) on %s, %s. "+
		"%d interleaved rounds; in each, every path in the order below, its sidecar started afresh: %d req/s, %d connections, %d B values, %s measured after %s of warm-up, then %s as fast as the same connections go. "+
		"PostgreSQL is one server the harness started (`initdb`, `fsync=off`); the cluster is three `redis-server` masters (`redis-cli --cluster create`). Each figure is the median of the rounds, with their range; ratios are of medians.\n\n",
		o.Rounds, o.Rate, o.Duration, o.Warmup, o.MaxFor, machine(), time.Now().UTC().Format("2006-01-02"),
		o.Rounds, o.Rate, o.Conns, o.Size, o.Duration, o.Warmup, o.MaxFor)
	for _, r := range results {
		fmt.Fprintf(&b, "- `%s`: %s.\n", r.name, r.about)
	}
	b.WriteString("\n| path | p50 | p90 | p99 | added p50 | added p90 | max req/s | CPU s / 1000 req | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		errs := 0
		for _, s := range r.Rounds {
			errs += s.Fixed.Errors + s.Max.Errors
		}
		fmt.Fprintf(&b, "| %s ", r.name)
		for _, m := range []metric{latencyAt(.5), latencyAt(.9), latencyAt(.99), added(.5), added(.9), maxRate, cpuPer1000} {
			b.WriteString("| " + cell(r, m) + " ")
		}
		fmt.Fprintf(&b, "| %d |\n", errs)
	}
	b.WriteString("\nAdded: the sidecar path minus its group's direct call at the same percentile in the same round. CPU is the sidecar's, over the measured run at the fixed rate.\n\n")
	b.WriteString(backendRatios(results))
	for _, r := range results {
		for i, s := range r.Rounds {
			if s.Fixed.FirstErr != "" || s.Max.FirstErr != "" {
				fmt.Fprintf(&b, "\nFirst error of %s in round %d: `%s`\n", r.name, i+1, strings.TrimSpace(s.Fixed.FirstErr+" "+s.Max.FirstErr))
			}
		}
	}
	return b.String()
}

// backendRatios are the lines "sidecar / direct" of each group: latency
// at p50 and p90, and maximum throughput.
func backendRatios(results []*result) string {
	var b strings.Builder
	for _, r := range results {
		if r.base == nil {
			continue
		}
		ratio := func(m metric) string {
			s, ok1 := over(r, m)
			d, ok2 := over(r.base, m)
			if !ok1 || !ok2 || d.med == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", s.med/d.med)
		}
		fmt.Fprintf(&b, "- %s, through the sidecar / direct: p50 %s, p90 %s, max req/s %s.\n", r.group, ratio(latencyAt(.5)), ratio(latencyAt(.9)), ratio(maxRate))
	}
	return b.String()
}

// startPostgreSQL starts the server and writes the state.postgresql
// Component that names its database postgres into e.pgResources.
func (e *env) startPostgreSQL() (*pgserver.Server, error) {
	s, err := pgserver.New()
	if err != nil {
		return nil, fmt.Errorf("%w (the PostgreSQL paths need it)", err)
	}
	e.pgConn = s.ConnString("postgres")
	e.pgResources = filepath.Join(e.dir, "resources-postgresql")
	yaml := "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.postgresql\n  version: v2\n  metadata:\n" +
		"  - name: connectionString\n    value: " + fmt.Sprintf("%q", e.pgConn) + "\n  - name: tablePrefix\n    value: sidecar_\n"
	if err := writeResource(e.pgResources, yaml); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// startCluster starts three redis-server masters, makes them a cluster
// (redis-cli --cluster create), waits until each says it is ok, and
// writes the state.redis Component that names them into
// e.clusterResources.
func (e *env) startCluster() ([]*proc, error) {
	var procs []*proc
	var addrs []string
	fail := func(err error) ([]*proc, error) {
		stopAll(procs)
		return nil, err
	}
	for i := range 3 {
		port, err := testproc.FreePort()
		if err != nil {
			return fail(err)
		}
		dir := filepath.Join(e.dir, "cluster-"+itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fail(err)
		}
		addr := "127.0.0.1:" + itoa(port)
		p, err := start("redis cluster node "+itoa(i), e.o.Redis, nil, "--port", itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
		if err != nil {
			return fail(fmt.Errorf("%w (the cluster paths need redis-server: apt-get install redis-server)", err))
		}
		procs = append(procs, p)
		if err := testproc.WaitTCP(addr, 10*time.Second); err != nil {
			return fail(err)
		}
		addrs = append(addrs, addr)
	}
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		return fail(fmt.Errorf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out))
	}
	for _, a := range addrs {
		c := goredis.NewClient(&goredis.Options{Addr: a})
		deadline := time.Now().Add(30 * time.Second)
		for {
			info, _ := c.ClusterInfo(context.Background()).Result()
			if strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3\r") {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				return fail(fmt.Errorf("cluster node %s not ready in 30 s:\n%s", a, info))
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
	e.cluster = strings.Join(addrs, ",")
	e.clusterResources = filepath.Join(e.dir, "resources-cluster")
	yaml := "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n" +
		"  - name: redisHost\n    value: " + fmt.Sprintf("%q", e.cluster) + "\n  - name: redisType\n    value: cluster\n"
	if err := writeResource(e.clusterResources, yaml); err != nil {
		return fail(err)
	}
	log.Printf("Redis Cluster of 3 masters on %s", e.cluster)
	return procs, nil
}

func writeResource(dir, yaml string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "statestore.yaml"), []byte(yaml), 0o644)
}

// pgDirect runs the store's own read or save with pgx, on a table the
// store created (its prefix direct_).
func pgDirect(save bool) func(*env, bool) (*rig, error) {
	return func(e *env, _ bool) (*rig, error) {
		ctx := context.Background()
		cfg, err := postgresql.ParseMetadata(map[string]string{"connectionString": e.pgConn, "tablePrefix": "direct_"})
		if err != nil {
			return nil, err
		}
		// The store makes the table, and writes the row, as it would.
		st, err := postgresql.New("bench", cfg)
		if err != nil {
			return nil, err
		}
		err = st.Ping(ctx)
		st.Close()
		if err != nil {
			return nil, err
		}
		pool, err := pgxpool.NewWithConfig(ctx, cfg.Pool)
		if err != nil {
			return nil, err
		}
		r := &rig{undo: []func(){pool.Close}}
		t := cfg.Table
		upsert := "INSERT INTO " + t + " (key, value, etag, expires_at) VALUES ($1, $2, gen_random_uuid(), NULL)" +
			" ON CONFLICT (key) DO UPDATE SET value = $2, updated_at = now(), etag = gen_random_uuid(), expires_at = NULL"
		get := "SELECT value, etag::text FROM " + t + " WHERE key = $1 AND (expires_at IS NULL OR expires_at >= now())"
		set := func(ctx context.Context) error { _, err := pool.Exec(ctx, upsert, "k", e.payload); return err }
		if err := set(ctx); err != nil {
			r.stop()
			return nil, fmt.Errorf("postgresql: %w", err)
		}
		call := func(ctx context.Context) error {
			var v []byte
			var etag string
			return pool.QueryRow(ctx, get, "k").Scan(&v, &etag)
		}
		if save {
			call = set
		}
		r.drive = func(l load) *stats { return attackFunc(call, l) }
		return r, nil
	}
}

// clusterDirect is go-redis's ClusterClient, as the store configures it,
// with plain GET and SET.
func clusterDirect(save bool) func(*env, bool) (*rig, error) {
	return func(e *env, _ bool) (*rig, error) {
		cfg, err := redis.ParseMetadata(map[string]string{"redisHost": e.cluster, "redisType": "cluster"})
		if err != nil {
			return nil, err
		}
		rdb := cfg.Conn.NewClient()
		if _, ok := rdb.(*goredis.ClusterClient); !ok {
			rdb.Close()
			return nil, fmt.Errorf("redisType cluster made a %T, not a cluster client", rdb)
		}
		r := &rig{undo: []func(){func() { _ = rdb.Close() }}}
		set := func(ctx context.Context) error { return rdb.Set(ctx, "direct", e.payload, 0).Err() }
		if err := set(context.Background()); err != nil {
			r.stop()
			return nil, fmt.Errorf("redis cluster: %w", err)
		}
		call := func(ctx context.Context) error { return rdb.Get(ctx, "direct").Err() }
		if save {
			call = set
		}
		r.drive = func(l load) *stats { return attackFunc(call, l) }
		return r, nil
	}
}

// backendSidecar is stateSidecar on the Components of the folder dir
// names.
func backendSidecar(dir func(*env) string, save bool) func(*env, bool) (*rig, error) {
	return func(e *env, profile bool) (*rig, error) {
		return e.stateSidecarIn(dir(e), save, profile)
	}
}
