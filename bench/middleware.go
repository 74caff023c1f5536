package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// middlewareTitle is the heading of the section -middleware writes.
const middlewareTitle = "## Middleware: the cost of each at p90"

// mwCase is one middleware the -middleware profile measures: a Component
// in the caller sidecar's httpPipeline, alone. A middleware that lands is
// one more entry of middlewareCases.
type mwCase struct {
	name  string // the path is "mw-" + name
	about string
	redis bool // it needs the harness's redis-server
	// issuer: it needs the harness's OpenID provider (theIssuer), started
	// before the rounds.
	issuer bool
	// component is the Component's YAML, named "mw", for the run's
	// options (rate) and Redis address.
	component func(e *env) []byte
	// header is what each request adds for the middleware (a bearer
	// token, say); nil: nothing.
	header func(e *env) http.Header
}

// mwUnlimited is a rate limit far above any load the harness drives, so
// that nothing is refused and what is measured is the limit's work.
const mwUnlimited = "1000000"

func rateLimitYAML(extra ...string) []byte {
	return middlewareYAML("middleware.http.ratelimit", append([]string{"maxRequestsPerSecond", mwUnlimited, "burst", mwUnlimited}, extra...)...)
}

var middlewareCases = []mwCase{
	{name: "ratelimit-memory", about: "`middleware.http.ratelimit`, buckets in the sidecar's memory (`store: memory`), " + mwUnlimited + " a second with a burst of as many: nothing refused",
		component: func(*env) []byte { return rateLimitYAML() }},
	{name: "ratelimit-redis", about: "the same limit with `store: redis` on the harness's `redis-server`: one `EVALSHA` per call",
		redis: true, component: func(e *env) []byte { return rateLimitYAML("store", "redis", "redisHost", e.redis) }},
	{name: "bearer", about: "`middleware.http.bearer`: each call's RS256 JWT checked against the keys of the harness's OpenID provider (fetched once, then cached)",
		issuer: true,
		component: func(*env) []byte {
			is, _ := theIssuer()
			return middlewareYAML("middleware.http.bearer", "issuer", is.srv.URL, "audience", issuerAudience)
		},
		header: func(*env) http.Header {
			is, _ := theIssuer()
			tok, _ := is.token()
			return http.Header{"Authorization": {"Bearer " + tok}}
		}},
	{name: "oauth2cc", about: "`middleware.http.oauth2clientcredentials`: the sidecar's own token (client credentials, from the harness's provider, cached and renewed in the background) put on each call",
		issuer: true,
		component: func(*env) []byte {
			is, _ := theIssuer()
			return middlewareYAML("middleware.http.oauth2clientcredentials", "clientId", issuerClient, "clientSecret", issuerSecret,
				"tokenURL", is.srv.URL+"/token", "headerName", "Authorization", "authStyle", "2")
		}},
}

// middlewarePaths are the -middleware profile's paths in the order a
// round runs them: the echo app directly (the baseline of "added"), two
// sidecars without a pipeline, then one path per middleware.
func middlewarePaths() []path {
	ps := []path{
		{name: "http-direct", group: "middleware", baseline: true, about: "the echo app, called directly", setup: httpDirect},
		{name: "mw-none", group: "middleware", sidecars: true, about: "two sidecars, mutual TLS off, no pipeline: what every other row is weighed against", setup: middlewarePair(nil)},
	}
	for _, c := range middlewareCases {
		ps = append(ps, path{name: "mw-" + c.name, group: "middleware", sidecars: true, about: c.about, setup: middlewarePair(&c)})
	}
	return ps
}

// middlewarePair is two sidecars, mutual TLS off, with c (nil: none) as
// the caller sidecar's httpPipeline, driven with POST /v1.0/invoke on the
// caller.
func middlewarePair(c *mwCase) func(*env, bool) (*rig, error) {
	return func(e *env, profile bool) (*rig, error) {
		po := pairOptions{profile: profile}
		var header http.Header
		if c != nil {
			dir, err := os.MkdirTemp(e.dir, "mw-")
			if err != nil {
				return nil, err
			}
			conf := filepath.Join(dir, "config.yaml")
			pipeline := "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: mw\nspec:\n  httpPipeline:\n    handlers:\n    - name: mw\n      type: " + componentType(c.component(e)) + "\n"
			if err := os.MkdirAll(filepath.Join(dir, "resources"), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(dir, "resources", "mw.yaml"), c.component(e), 0o644); err != nil {
				return nil, err
			}
			if err := os.WriteFile(conf, []byte(pipeline), 0o644); err != nil {
				return nil, err
			}
			po.callerArgs = []string{"--resources-path", filepath.Join(dir, "resources"), "--config", conf}
			if c.header != nil {
				header = c.header(e)
			}
		}
		r, caller, err := e.sidecarPair("http", e.appAddr, po)
		if err != nil {
			return nil, err
		}
		if c != nil {
			// The pipeline is in force: the caller lists the Component.
			if err := listsComponent(caller.httpURL, "mw", componentType(c.component(e)), header); err != nil {
				r.stop()
				return nil, err
			}
		}
		h := http.Header{"Content-Type": {"application/octet-stream"}}
		for k, vv := range header {
			h[k] = vv
		}
		tgt := vegeta.Target{Method: "POST", URL: caller.httpURL + "/v1.0/invoke/bench-app/method/echo", Body: e.payload, Header: h}
		r.drive = func(l load) *stats { return attackHTTP(tgt, l, false) }
		return r, nil
	}
}

// componentType is the spec.type of a Component's YAML.
func componentType(yaml []byte) string {
	for line := range strings.SplitSeq(string(yaml), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "type:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// middlewareBench runs the -middleware profile and writes its section of
// file.
func middlewareBench(o options, file string) error {
	e, cleanup, err := newEnv(o)
	if err != nil {
		return err
	}
	defer cleanup()
	load0 := loadAverage()
	var results []*result
	var base *result
	needRedis, needIssuer := false, false
	for _, p := range middlewarePaths() {
		r := &result{path: p, base: base}
		if p.baseline {
			base, r.base = r, nil
		}
		results = append(results, r)
	}
	for _, c := range middlewareCases {
		needRedis = needRedis || c.redis
		needIssuer = needIssuer || c.issuer
	}
	if needIssuer {
		if _, err := theIssuer(); err != nil {
			return fmt.Errorf("the OpenID provider of the bearer and client-credentials paths: %w", err)
		}
	}
	if needRedis {
		rp, err := e.startRedis()
		if err != nil {
			return err
		}
		defer rp.stop()
	}
	if err := e.rounds(results, o.Profile); err != nil {
		return err
	}
	section := middlewareReport(o, results, load0, loadAverage(), e.profile)
	fmt.Print(section)
	return writeSection(file, middlewareTitle, section)
}

// loadAverage is the 1-minute load average, -1 when unknown.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	var v float64
	if _, err := fmt.Sscanf(string(b), "%f", &v); err != nil {
		return -1
	}
	return v
}

// overNone is, for a middleware path, its p90 minus mw-none's in the same
// round (µs).
func overNone(none *result, q float64) metric {
	return metric{name: "over none", format: fmtUS, of: func(r *result, i int) (float64, bool) {
		if none == nil || i >= len(none.Rounds) {
			return 0, false
		}
		return micros(r.Rounds[i].Fixed.quantile(q) - none.Rounds[i].Fixed.quantile(q)), true
	}}
}

// ratioOfMedians is ours' median of m over none's, "-" when either is
// missing or none's is not above 0.
func ratioOfMedians(ours, none *result, m metric) string {
	a, ok1 := over(ours, m)
	b, ok2 := over(none, m)
	if !ok1 || !ok2 || b.med <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a.med/b.med)
}

func middlewareReport(o options, results []*result, load0, load1 float64, prof profile) string {
	var b strings.Builder
	var none *result
	for _, r := range results {
		if r.name == "mw-none" {
			none = r
		}
	}
	fmt.Fprintf(&b, "%s\n\n", middlewareTitle)
	fmt.Fprintf(&b, "`go run ./bench -middleware bench/RESULTS.md` on %s, %s. %d interleaved rounds; in each, every path in the order below: %d req/s, %d connections, %d B each way, %s measured after %s of warm-up, then %s as fast as the same connections go; every path's processes started afresh each round. "+
		"Each middleware is the only handler of the caller sidecar's `httpPipeline` (the app's call to its sidecar). Each figure is the median of the rounds with their range; ratios are of medians, against `mw-none` of the same run.\n\n",
		machine(), time.Now().UTC().Format("2006-01-02"), o.Rounds, o.Rate, o.Conns, o.Size, o.Duration, o.Warmup, o.MaxFor)
	fmt.Fprintf(&b, "Load average (1 min) %.1f at the start, %.1f at the end, on %d CPUs", load0, load1, runtime.NumCPU())
	if max(load0, load1) > float64(runtime.NumCPU()) {
		b.WriteString(": the machine was busy with other work, and these numbers are noise; run it again on a quiet machine before reading them")
	}
	b.WriteString(".\n\n")
	for _, r := range results {
		fmt.Fprintf(&b, "- `%s`: %s.\n", r.name, r.about)
	}
	b.WriteString("\n| path | p50 | p90 | p99 | added p90 (over direct) | p90 over `mw-none` | p90 / `mw-none`'s | CPU s / 1000 req | / `mw-none`'s | max req/s | errors (all rounds) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		errs := 0
		for _, s := range r.Rounds {
			errs += s.Fixed.Errors + s.Max.Errors
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s ", r.name, cell(r, latencyAt(.5)), cell(r, latencyAt(.9)), cell(r, latencyAt(.99)), cell(r, added(.9)))
		if r.baseline || r == none {
			b.WriteString("| - | - | " + cell(r, cpuPer1000) + " | - ")
		} else {
			fmt.Fprintf(&b, "| %s | %s | %s | %s ", cell(r, overNone(none, .9)), ratioOfMedians(r, none, latencyAt(.9)), cell(r, cpuPer1000), ratioOfMedians(r, none, cpuPer1000))
		}
		fmt.Fprintf(&b, "| %s | %d |\n", cell(r, maxRate), errs)
	}
	b.WriteString("\n\"p90 over `mw-none`\" is the path's p90 minus `mw-none`'s in the same round, its median and range over the rounds: the middleware's cost at p90. CPU is of both sidecars (not of Redis), over the measured run at the fixed rate.\n")
	for _, r := range results {
		for i, s := range r.Rounds {
			if s.Fixed.FirstErr != "" || s.Max.FirstErr != "" {
				fmt.Fprintf(&b, "\nFirst error of %s in round %d: `%s`\n", r.name, i+1, strings.TrimSpace(s.Fixed.FirstErr+" "+s.Max.FirstErr))
			}
		}
	}
	if prof.path != "" {
		b.WriteString("\n" + strings.Replace(whereTimeGoes(prof), "## Where the time goes", "### Where the time goes", 1))
	}
	return b.String()
}

// listsComponent checks that the sidecar at url lists the Component name
// of type typ in its metadata.
func listsComponent(url, name, typ string, h http.Header) error {
	req, err := http.NewRequest(http.MethodGet, url+"/v1.0/metadata", nil)
	if err != nil {
		return err
	}
	maps.Copy(req.Header, h)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("metadata of %s: %s: %s", url, resp.Status, b)
	}
	var md struct {
		Components []struct{ Name, Type string } `json:"components"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		return fmt.Errorf("metadata of %s: %w", url, err)
	}
	for _, c := range md.Components {
		if c.Name == name && c.Type == typ {
			return nil
		}
	}
	return fmt.Errorf("the caller sidecar does not list the Component %q (%s) in its metadata: %+v", name, typ, md.Components)
}
