package redis

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/pkg/pubsub"
)

// Config is what a pubsub.redis component's metadata says.
type Config struct {
	Options *redis.Options
	// Group is the consumer group (metadata consumerID): the replicas of
	// an app share it, and each event of a topic goes to one of them.
	Group string
	// Replica names this sidecar in its consumer's name: the pod name, or
	// the host name when "" (see New).
	Replica string
	// Concurrency is how many handler calls the broker makes at once,
	// over all its subscriptions.
	Concurrency int
	// QueueDepth is how many events the broker reads ahead of its
	// handlers: with Concurrency, it bounds what it holds read and not
	// yet acknowledged.
	QueueDepth int
	// ProcessingTimeout is how long an event may stay pending on a
	// consumer that does not refresh it before another claims it.
	ProcessingTimeout time.Duration
	// RedeliverInterval is how often each subscription claims the events
	// pending longer than ProcessingTimeout.
	RedeliverInterval time.Duration
	// MaxLenApprox trims each stream to about this many entries when
	// publishing (XADD MAXLEN ~); 0 keeps everything.
	MaxLenApprox int64
	// Logger is where the broker says that Redis went away, came back, or
	// lost a consumer group; nil logs nothing.
	Logger *slog.Logger
}

// Env is what metadata templates read.
type Env struct {
	AppID     string // consumerID's default; {appID}
	Namespace string // {namespace} is "<namespace>.<app id>", as daprd has it
	PodName   string // {podName}; Config.Replica
}

// Defaults of the pubsub.redis metadata fields, as daprd's.
const (
	DefaultConcurrency       = 10
	DefaultQueueDepth        = 100
	DefaultProcessingTimeout = 60 * time.Second
	DefaultRedeliverInterval = 15 * time.Second
)

// fields are the metadata fields of a pubsub.redis component.
var fields = []string{
	"redisHost", "redisPassword", "redisUsername", "redisDB", "enableTLS", "redisType", "failover",
	"dialTimeout", "readTimeout", "writeTimeout", "poolTimeout", "poolSize", "minIdleConns", "redisMaxRetries",
	"consumerID", "concurrency", "queueDepth", "processingTimeout", "redeliverInterval", "maxLenApprox",
}

// ParseMetadata validates a pubsub.redis component's metadata, the
// templates of consumerID filled from env. Errors name the field and what
// it accepts.
func ParseMetadata(md map[string]string, env Env) (Config, error) {
	for k := range md {
		if !slices.Contains(fields, k) && !slices.Contains(pubsub.ScopeFields, k) {
			all := append(slices.Clone(fields), pubsub.ScopeFields...)
			sort.Strings(all)
			return Config{}, fmt.Errorf("metadata %q is not a pubsub.redis field; accepted: %s", k, strings.Join(all, ", "))
		}
	}
	o, err := options(md)
	if err != nil {
		return Config{}, err
	}
	c := Config{Options: o, Replica: env.PodName, Concurrency: DefaultConcurrency, QueueDepth: DefaultQueueDepth,
		ProcessingTimeout: DefaultProcessingTimeout, RedeliverInterval: DefaultRedeliverInterval}
	if c.Group, err = consumerID(md["consumerID"], env); err != nil {
		return Config{}, err
	}
	ints := []struct {
		name   string
		dst    *int
		lo, hi int
	}{{"concurrency", &c.Concurrency, 1, 10_000}, {"queueDepth", &c.QueueDepth, 1, 100_000}}
	for _, f := range ints {
		if v, ok := md[f.name]; ok {
			if *f.dst, err = wholeNumber(f.name, v, f.lo, f.hi); err != nil {
				return Config{}, err
			}
		}
	}
	for name, dst := range map[string]*time.Duration{"processingTimeout": &c.ProcessingTimeout, "redeliverInterval": &c.RedeliverInterval} {
		if v, ok := md[name]; ok {
			if *dst, err = pubsub.ParseDuration(name, v); err != nil {
				return Config{}, fmt.Errorf("%w (redelivery cannot be turned off: it is how a failed event is delivered again)", err)
			}
		}
	}
	if v, ok := md["maxLenApprox"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return Config{}, fmt.Errorf("metadata maxLenApprox %q: want a whole number of entries, 0 for no trimming", v)
		}
		c.MaxLenApprox = n
	}
	return c, nil
}

// options reads the connection fields.
func options(md map[string]string) (*redis.Options, error) {
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
		// A call's deadline (a resiliency timeout) ends its wait for a
		// hung server, not only readTimeout.
		ContextTimeoutEnabled: true,
	}
	if o.Addr == "" {
		return nil, fmt.Errorf("metadata redisHost is missing: give the server as host:port, e.g. localhost:6379")
	}
	var err error
	ints := []struct {
		name   string
		dst    *int
		lo, hi int
	}{{"redisDB", &o.DB, 0, 15}, {"poolSize", &o.PoolSize, 1, 10_000}, {"minIdleConns", &o.MinIdleConns, 0, 10_000}, {"redisMaxRetries", &o.MaxRetries, 0, 100}}
	for _, f := range ints {
		if v, ok := md[f.name]; ok {
			if *f.dst, err = wholeNumber(f.name, v, f.lo, f.hi); err != nil {
				return nil, err
			}
		}
	}
	durs := map[string]*time.Duration{"dialTimeout": &o.DialTimeout, "readTimeout": &o.ReadTimeout, "writeTimeout": &o.WriteTimeout, "poolTimeout": &o.PoolTimeout}
	for name, dst := range durs {
		if v, ok := md[name]; ok {
			if *dst, err = pubsub.ParseDuration(name, v); err != nil {
				return nil, err
			}
		}
	}
	if on, err := boolField(md, "enableTLS"); err != nil {
		return nil, err
	} else if on {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if v, ok := md["redisType"]; ok && v != "node" {
		return nil, fmt.Errorf("metadata redisType %q: only node (one server) is supported", v)
	}
	if on, err := boolField(md, "failover"); err != nil || on {
		return nil, fmt.Errorf("metadata failover %q: only false is supported (no Sentinel)", md["failover"])
	}
	return o, nil
}

// consumerID is the consumer group: metadata consumerID with daprd's
// templates filled in, or the app id.
func consumerID(v string, env Env) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		v = env.AppID
	}
	for strings.Contains(v, "{uuid}") {
		v = strings.Replace(v, "{uuid}", pubsub.NewUUID(), 1)
	}
	if strings.Contains(v, "{podName}") {
		if env.PodName == "" {
			return "", fmt.Errorf("metadata consumerID %q refers to {podName}, and this sidecar has no pod name (POD_NAME)", v)
		}
		v = strings.ReplaceAll(v, "{podName}", env.PodName)
	}
	v = strings.ReplaceAll(v, "{namespace}", env.Namespace+"."+env.AppID)
	v = strings.ReplaceAll(v, "{appID}", env.AppID)
	if v == "" {
		return "", fmt.Errorf("metadata consumerID is empty and there is no app id to take its place")
	}
	return v, nil
}

func wholeNumber(name, v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("metadata %s %q: want a whole number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

func boolField(md map[string]string, name string) (bool, error) {
	v, ok := md[name]
	if !ok {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("metadata %s %q: want true or false", name, v)
	}
	return b, nil
}
