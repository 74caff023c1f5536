package redis

import (
	"crypto/tls"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/pkg/state"
)

// Config is what a state.redis component's metadata says.
type Config struct {
	Options *redis.Options
	// TTL is the default time to live of values (metadata ttlInSeconds).
	TTL time.Duration
}

// Metadata fields of a state.redis component and their meaning.
var fields = map[string]string{
	"redisHost":     "host:port of the server (required)",
	"redisPassword": "password",
	"redisUsername": "ACL user name",
	"redisDB":       "database number, 0 to 15",
	"enableTLS":     "true or false",
	"ttlInSeconds":  "default time to live, whole seconds (0 or -1: none)",
	"dialTimeout":   "Go duration, e.g. 2s",
	"readTimeout":   "Go duration",
	"writeTimeout":  "Go duration",
	"poolTimeout":   "Go duration",
	"poolSize":      "connections in the pool",
	"minIdleConns":  "idle connections kept open",
	"maxRetries":    "retries of a failed command",
	"keyPrefix":     "appid, name, namespace, none or a literal prefix",
	// Read by the state API, for every store.
	"maxTransactionOperations": "operations one transaction may have",
	"actorStateStore":          "true or false (accepted, unused)",
}

// ParseMetadata validates a state.redis component's metadata. Errors name
// the field and what it accepts.
func ParseMetadata(md map[string]string) (Config, error) {
	for k := range md {
		if _, ok := fields[k]; !ok {
			return Config{}, fmt.Errorf("metadata %q is not a state.redis field; accepted: redisHost, redisPassword, redisUsername, redisDB, enableTLS, ttlInSeconds, dialTimeout, readTimeout, writeTimeout, poolTimeout, poolSize, minIdleConns, maxRetries, keyPrefix, maxTransactionOperations", k)
		}
	}
	o := &redis.Options{
		Addr:         md["redisHost"],
		Password:     md["redisPassword"],
		Username:     md["redisUsername"],
		DialTimeout:  2 * time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
		PoolTimeout:  3 * time.Second,
		MaxRetries:   1,
		// Fail fast when the server is down rather than retry for long.
		MinRetryBackoff: 8 * time.Millisecond,
		MaxRetryBackoff: 64 * time.Millisecond,
	}
	if o.Addr == "" {
		return Config{}, fmt.Errorf("metadata redisHost is missing: give the server as host:port, e.g. localhost:6379")
	}
	var c Config
	var err error
	ints := []struct {
		name     string
		dst      *int
		min, max int
	}{{"redisDB", &o.DB, 0, 15}, {"poolSize", &o.PoolSize, 1, 10000}, {"minIdleConns", &o.MinIdleConns, 0, 10000}, {"maxRetries", &o.MaxRetries, 0, 100}}
	for _, f := range ints {
		if v, ok := md[f.name]; ok {
			if *f.dst, err = strconv.Atoi(v); err != nil || *f.dst < f.min || *f.dst > f.max {
				return Config{}, fmt.Errorf("metadata %s %q: want a whole number from %d to %d", f.name, v, f.min, f.max)
			}
		}
	}
	durs := []struct {
		name string
		dst  *time.Duration
	}{{"dialTimeout", &o.DialTimeout}, {"readTimeout", &o.ReadTimeout}, {"writeTimeout", &o.WriteTimeout}, {"poolTimeout", &o.PoolTimeout}}
	for _, f := range durs {
		if v, ok := md[f.name]; ok {
			if *f.dst, err = time.ParseDuration(v); err != nil || *f.dst <= 0 {
				return Config{}, fmt.Errorf("metadata %s %q: want a positive Go duration such as 500ms or 2s", f.name, v)
			}
		}
	}
	if v, ok := md["enableTLS"]; ok {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return Config{}, fmt.Errorf("metadata enableTLS %q: want true or false", v)
		}
		if on {
			o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	}
	if v, ok := md[state.MetadataTTL]; ok {
		if c.TTL, err = state.ParseDefaultTTL(v); err != nil {
			return Config{}, err
		}
	}
	c.Options = o
	return c, nil
}
