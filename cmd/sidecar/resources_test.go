package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tandem-run/tandem/pkg/resolver"
	"github.com/tandem-run/tandem/pkg/resolver/standalone"
)

// The standalone resolver's cache hits, renewals and misses are scraped as
// tandem_resolver_cache_lookups_total{app_id,result}.
func TestResolverCacheMetrics(t *testing.T) {
	dir := t.TempDir()
	reg, err := standalone.Register(dir, standalone.Entry{AppID: "callee", PID: 1, InternalAddress: "127.0.0.1:1", StartedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	res := standalone.NewResolver(dir)
	res.CacheTTL = time.Hour
	pr := prometheus.NewRegistry()
	resolverCacheMetrics("caller", res, pr)
	resolverCacheMetrics("caller", res, pr) // a second registration is ignored
	for range 4 {
		if _, err := res.Resolve(context.Background(), resolver.Target{ID: "callee"}); err != nil {
			t.Fatal(err)
		}
	}
	want := `
# HELP tandem_resolver_cache_lookups_total App ids the standalone resolver looked up, by result: hit (answered from its cache of one second), renewed (the app's registry folder unchanged: one stat) or miss (the folder read).
# TYPE tandem_resolver_cache_lookups_total counter
tandem_resolver_cache_lookups_total{app_id="caller",result="hit"} 3
tandem_resolver_cache_lookups_total{app_id="caller",result="miss"} 1
tandem_resolver_cache_lookups_total{app_id="caller",result="renewed"} 0
`
	if err := testutil.GatherAndCompare(pr, strings.NewReader(want), "tandem_resolver_cache_lookups_total"); err != nil {
		t.Fatal(err)
	}
}
