package redis

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tandem-run/tandem/internal/redisconn"
	"github.com/tandem-run/tandem/pkg/state"
)

// Config is what a state.redis component's metadata says.
type Config struct {
	// Conn is the connection: one server, Sentinels or a cluster.
	Conn redisconn.Config
	// TTL is the default time to live of values (metadata ttlInSeconds).
	TTL time.Duration
}

// dialect is how state.redis names and reads the fields it shares with
// pubsub.redis: retries as maxRetries (daprd's older name, which its
// state.redis still reads) or redisMaxRetries, durations as Go durations.
var dialect = redisconn.Dialect{
	MaxRetries: []string{"redisMaxRetries", "maxRetries"},
	Duration: func(name, v string) (time.Duration, error) {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("metadata %s %q: want a positive Go duration such as 500ms or 2s", name, v)
		}
		return d, nil
	},
}

// fields are the metadata fields of a state.redis component beside the
// connection's (redisconn.Fields).
var fields = []string{
	"maxRetries", "redisMaxRetries",
	"ttlInSeconds", // default time to live, whole seconds (0 or -1: none)
	"keyPrefix",    // appid, name, namespace, none or a literal prefix
	// Read by the state API, for every store.
	"maxTransactionOperations",
	"actorStateStore", // accepted, unused
}

// ParseMetadata validates a state.redis component's metadata. Errors name
// the field and what it accepts.
func ParseMetadata(md map[string]string) (Config, error) {
	for k := range md {
		if !slices.Contains(fields, k) && !slices.Contains(redisconn.Fields, k) {
			all := slices.Concat(redisconn.Fields, fields)
			all = slices.DeleteFunc(all, func(f string) bool { return f == "actorStateStore" })
			sort.Strings(all)
			return Config{}, fmt.Errorf("metadata %q is not a state.redis field; accepted: %s", k, strings.Join(all, ", "))
		}
	}
	conn, err := redisconn.Parse(md, dialect)
	if err != nil {
		return Config{}, err
	}
	c := Config{Conn: conn}
	if v, ok := md[state.MetadataTTL]; ok {
		if c.TTL, err = state.ParseDefaultTTL(v); err != nil {
			return Config{}, err
		}
	}
	return c, nil
}
