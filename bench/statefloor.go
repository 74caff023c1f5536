package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/pkg/state/redis"
)

// The state floor is a bare HTTP front to Redis, this binary re-run in
// state floor mode:
//
//	bench -state-floor LISTEN REDIS
//
// GET /state/KEY answers the value of KEY (go-redis GET), POST /state/KEY
// stores the request body under KEY (SET), with net/http's server and a
// go-redis client configured as the sidecar's store configures its own. It
// decodes nothing and checks nothing: it is the least that reaching Redis
// through an HTTP process costs, the state paths' counterpart of the HTTP
// floor.
func serveStateFloor(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: -state-floor LISTEN REDIS, got %q", args)
	}
	cfg, err := redis.ParseMetadata(map[string]string{"redisHost": args[1]})
	if err != nil {
		return err
	}
	rdb := goredis.NewClient(cfg.Conn.Options.Simple())
	defer rdb.Close()
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		return err
	}
	announce(ln)
	return http.Serve(ln, stateFloorHandler(rdb))
}

// The embedded state floor is the same front over a map in its own
// memory, guarded by a mutex, the body stored as it is:
//
//	bench -state-floor-embedded LISTEN
//
// It is the least that an HTTP process keeping state in its memory costs:
// the floor of a sidecar on its embedded store.
func serveStateFloorEmbedded(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: -state-floor-embedded LISTEN, got %q", args)
	}
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		return err
	}
	announce(ln)
	return http.Serve(ln, stateFloorMapHandler(newMemMap()))
}

// memMap is a map of values under a mutex: the embedded floor's storage,
// and the embedded paths' baseline called in the harness.
type memMap struct {
	mu sync.RWMutex
	m  map[string][]byte
}

func newMemMap() *memMap { return &memMap{m: map[string][]byte{}} }

func (m *memMap) get(k string) ([]byte, bool) {
	m.mu.RLock()
	v, ok := m.m[k]
	m.mu.RUnlock()
	return v, ok
}

func (m *memMap) set(k string, v []byte) {
	m.mu.Lock()
	m.m[k] = v
	m.mu.Unlock()
}

func stateFloorMapHandler(m *memMap) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /state/{key}", func(w http.ResponseWriter, r *http.Request) {
		v, ok := m.get(r.PathValue("key"))
		if !ok {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		_, _ = w.Write(v)
	})
	mux.HandleFunc("POST /state/{key}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		m.set(r.PathValue("key"), body)
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func stateFloorHandler(rdb *goredis.Client) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /state/{key}", func(w http.ResponseWriter, r *http.Request) {
		v, err := rdb.Get(r.Context(), r.PathValue("key")).Bytes()
		switch {
		case errors.Is(err, goredis.Nil):
			w.WriteHeader(http.StatusNoContent)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		default:
			_, _ = w.Write(v)
		}
	})
	mux.HandleFunc("POST /state/{key}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := rdb.Set(r.Context(), r.PathValue("key"), body, 0).Err(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
