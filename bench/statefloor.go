package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

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
