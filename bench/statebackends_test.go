package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/testutil/pgserver"
)

// TestStateBackendsDirect starts the profile's PostgreSQL and Redis
// Cluster and drives its direct paths a moment: every call succeeds, the
// Components name what was started, and the report has a row and a
// ratio per group. The sidecar paths are the state paths' (TestStateFloor
// and the sidecar's own tests); the profile runs them with make
// bench-state-backends.
func TestStateBackendsDirect(t *testing.T) {
	if _, err := pgserver.Bin(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	e := &env{o: options{Redis: "redis-server", Size: 1024, Rounds: 1}, dir: t.TempDir(), payload: bytes.Repeat([]byte("x"), 1024)}
	pg, err := e.startPostgreSQL()
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	cluster, err := e.startCluster()
	if err != nil {
		t.Fatal(err)
	}
	defer stopAll(cluster)
	for dir, want := range map[string]string{e.pgResources: "state.postgresql", e.clusterResources: "redisType"} {
		b, err := os.ReadFile(filepath.Join(dir, "statestore.yaml"))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s: %s, %v; want it to say %s", dir, b, err, want)
		}
	}
	var results []*result
	base := map[string]*result{}
	for _, p := range backendPaths {
		r := &result{path: p}
		if p.baseline {
			base[p.group] = r
			rg, err := p.setup(e, false)
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			s := rg.drive(load{Rate: 100, Conns: 2, Duration: 300 * time.Millisecond})
			rg.stop()
			if s.Errors > 0 || s.Requests == 0 {
				t.Errorf("%s: %d of %d calls failed: %s", p.name, s.Errors, s.Requests, s.FirstErr)
			}
			r.Rounds = []*sample{{Fixed: s, Max: s}}
		} else {
			// The sidecar's figures stand in as the direct ones.
			r.base = base[p.group]
			r.Rounds = r.base.Rounds
		}
		results = append(results, r)
	}
	rep := stateBackendsReport(e.o, results)
	for _, want := range []string{stateBackendsTitle, "| pg-save-sidecar |", "| cluster-get-direct |", "- cluster save, through the sidecar / direct: p50 1.00, p90 1.00"} {
		if !strings.Contains(rep, want) {
			t.Errorf("the report lacks %q:\n%s", want, rep)
		}
	}
}
