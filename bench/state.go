package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	testproc "github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/resources"
	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/redis"
)

// The state paths read and write one key of o.Size bytes in a real
// redis-server three ways: plain GET and SET with go-redis; the same
// go-redis calls the sidecar makes, through its Redis store in the
// harness's process; and through a sidecar. The first two tell command
// choice apart, the last two sidecar overhead.

// redisClient is a go-redis client configured as the sidecar's Redis store
// configures its own from the statestore Component.
func (e *env) redisClient() (*goredis.Client, error) {
	cfg, err := redis.ParseMetadata(map[string]string{"redisHost": e.redis})
	if err != nil {
		return nil, err
	}
	return goredis.NewClient(cfg.Conn.Options.Simple()), nil
}

func stateDirect(save bool) func(*env, bool) (*rig, error) {
	return func(e *env, _ bool) (*rig, error) {
		rdb, err := e.redisClient()
		if err != nil {
			return nil, err
		}
		r := &rig{undo: []func(){func() { _ = rdb.Close() }}}
		set := func(ctx context.Context) error { return rdb.Set(ctx, "direct", e.payload, 0).Err() }
		if err := set(context.Background()); err != nil {
			r.stop()
			return nil, fmt.Errorf("redis: %w", err)
		}
		call := func(ctx context.Context) error { return rdb.Get(ctx, "direct").Err() }
		if save {
			call = set
		}
		r.drive = func(l load) *stats { return attackFunc(call, l) }
		return r, nil
	}
}

func stateStore(save bool) func(*env, bool) (*rig, error) {
	return func(e *env, _ bool) (*rig, error) {
		rdb, err := e.redisClient()
		if err != nil {
			return nil, err
		}
		st := redis.New("bench", rdb) // closes rdb
		r := &rig{undo: []func(){func() { _ = st.Close() }}}
		// The key as the sidecar prefixes it (app id||key).
		req := state.SetRequest{Key: "bench-store||k", Value: e.payload}
		set := func(ctx context.Context) error { return st.Set(ctx, req) }
		if err := set(context.Background()); err != nil {
			r.stop()
			return nil, err
		}
		call := func(ctx context.Context) error {
			it, err := st.Get(ctx, req.Key)
			if err == nil && it == nil {
				err = fmt.Errorf("redis store: %s is missing", req.Key)
			}
			return err
		}
		if save {
			call = set
		}
		r.drive = func(l load) *stats { return attackFunc(call, l) }
		return r, nil
	}
}

func stateSidecar(save bool) func(*env, bool) (*rig, error) {
	return func(e *env, profile bool) (*rig, error) {
		return e.stateSidecarIn(e.resources, save, profile)
	}
}

// stateSidecarIn starts a sidecar on the Components of the folder
// resources and drives its statestore: saves of one item, or reads of it.
func (e *env) stateSidecarIn(resources string, save, profile bool) (*rig, error) {
	r, a, err := e.soloSidecar("bench-state", "", "http", profile, "--resources-path", resources)
	if err != nil {
		return nil, err
	}
	// A JSON string of o.Size bytes, quotes included.
	value := `"` + strings.Repeat("x", e.o.Size-2) + `"`
	body := []byte(`[{"key":"k","value":` + value + `}]`)
	save1 := vegeta.Target{Method: "POST", URL: a.httpURL + "/v1.0/state/statestore", Body: body, Header: http.Header{"Content-Type": {"application/json"}}}
	if err := httpCall(http.DefaultClient, save1); err != nil {
		r.stop()
		return nil, fmt.Errorf("state save through the sidecar: %w", err)
	}
	tgt := vegeta.Target{Method: "GET", URL: a.httpURL + "/v1.0/state/statestore/k"}
	if save {
		tgt = save1
	}
	r.drive = func(l load) *stats { return attackHTTP(tgt, l, false) }
	return r, nil
}

func stateFloor(save bool) func(*env, bool) (*rig, error) {
	return func(e *env, _ bool) (*rig, error) {
		p, addr, err := e.floorProcess("state-floor", nil, "-state-floor", "127.0.0.1:0", e.redis)
		if err != nil {
			return nil, err
		}
		return e.stateFloorDrive(&rig{procs: []*proc{p}}, addr, save)
	}
}

// stateFloorDrive stores a value through the state floor at addr, then
// drives r with saves of it, or reads of it.
func (e *env) stateFloorDrive(r *rig, addr string, save bool) (*rig, error) {
	url := "http://" + addr + "/state/floor"
	save1 := vegeta.Target{Method: "POST", URL: url, Body: e.payload, Header: http.Header{"Content-Type": {"application/octet-stream"}}}
	if err := httpCall(http.DefaultClient, save1); err != nil {
		r.stop()
		return nil, fmt.Errorf("state floor: %w", err)
	}
	tgt := vegeta.Target{Method: "GET", URL: url}
	if save {
		tgt = save1
	}
	r.drive = func(l load) *stats { return attackHTTP(tgt, l, false) }
	return r, nil
}

// startRedis starts the redis-server of the state paths and writes the
// statestore Component that names it into e.resources.
func (e *env) startRedis() (*proc, error) {
	port, err := testproc.FreePort()
	if err != nil {
		return nil, err
	}
	e.redis = "127.0.0.1:" + itoa(port)
	p, err := start("redis", e.o.Redis, nil, "--port", itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", e.dir)
	if err != nil {
		return nil, fmt.Errorf("%w (the state paths need redis-server: apt-get install redis-server)", err)
	}
	if err := testproc.WaitTCP(e.redis, 10*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	e.resources = filepath.Join(e.dir, "resources")
	if err := os.MkdirAll(e.resources, 0o755); err != nil {
		p.stop()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(e.resources, "statestore.yaml"), resources.RedisYAML("statestore", e.redis), 0o644); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// The embedded state paths are the same calls without Redis: the
// sidecar on its embedded default store (a standalone sidecar with no
// state store Component), against the same bare HTTP front over a map in
// its memory, both against that map called in the harness.

func stateDirectEmbedded(save bool) func(*env, bool) (*rig, error) {
	return func(e *env, _ bool) (*rig, error) {
		m := newMemMap()
		m.set("direct", e.payload)
		call := func(context.Context) error {
			if _, ok := m.get("direct"); !ok {
				return fmt.Errorf("the map lost its key")
			}
			return nil
		}
		if save {
			call = func(context.Context) error {
				// A copy, as a server keeps the body it read.
				m.set("direct", append([]byte(nil), e.payload...))
				return nil
			}
		}
		return &rig{drive: func(l load) *stats { return attackFunc(call, l) }}, nil
	}
}

func stateFloorEmbedded(save bool) func(*env, bool) (*rig, error) {
	return func(e *env, _ bool) (*rig, error) {
		p, addr, err := e.floorProcess("state-floor-embedded", nil, "-state-floor-embedded", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		return e.stateFloorDrive(&rig{procs: []*proc{p}}, addr, save)
	}
}

func stateSidecarEmbedded(save bool) func(*env, bool) (*rig, error) {
	return func(e *env, profile bool) (*rig, error) {
		// A folder with no Components: the sidecar's embedded store.
		empty := filepath.Join(e.dir, "resources-none")
		if err := os.MkdirAll(empty, 0o755); err != nil {
			return nil, err
		}
		return e.stateSidecarIn(empty, save, profile)
	}
}
