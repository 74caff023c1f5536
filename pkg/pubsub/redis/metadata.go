package redis

import (
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-run/tandem/internal/redisconn"
	"github.com/tandem-run/tandem/pkg/pubsub"
)

// Config is what a pubsub.redis component's metadata says.
type Config struct {
	// Conn is the connection: one server, Sentinels or a cluster.
	Conn redisconn.Config
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
	// WaitForReplicas is how many replicas must have an event before
	// Publish returns (WAIT, on the connection that added it); 0 does not
	// wait. Redis replicates asynchronously: without it, a failover loses
	// what the old master acknowledged and had not yet sent on.
	WaitForReplicas int
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

// fields are the metadata fields of a pubsub.redis component beside the
// connection's (redisconn.Fields).
var fields = []string{
	"redisMaxRetries",
	"consumerID", "concurrency", "queueDepth", "processingTimeout", "redeliverInterval", "maxLenApprox",
	"waitForReplicas",
}

// dialect is how pubsub.redis names and reads the fields it shares with
// state.redis: retries as redisMaxRetries, durations as Go durations or
// whole milliseconds, as daprd's.
var dialect = redisconn.Dialect{MaxRetries: []string{"redisMaxRetries"}, Duration: pubsub.ParseDuration}

// ParseMetadata validates a pubsub.redis component's metadata, the
// templates of consumerID filled from env. Errors name the field and what
// it accepts.
func ParseMetadata(md map[string]string, env Env) (Config, error) {
	for k := range md {
		if !slices.Contains(fields, k) && !slices.Contains(redisconn.Fields, k) && !slices.Contains(pubsub.ScopeFields, k) {
			all := slices.Concat(redisconn.Fields, fields, pubsub.ScopeFields)
			sort.Strings(all)
			return Config{}, fmt.Errorf("metadata %q is not a pubsub.redis field; accepted: %s", k, strings.Join(all, ", "))
		}
	}
	conn, err := redisconn.Parse(md, dialect)
	if err != nil {
		return Config{}, err
	}
	c := Config{Conn: conn, Replica: env.PodName, Concurrency: DefaultConcurrency, QueueDepth: DefaultQueueDepth,
		ProcessingTimeout: DefaultProcessingTimeout, RedeliverInterval: DefaultRedeliverInterval}
	if c.Group, err = consumerID(md["consumerID"], env); err != nil {
		return Config{}, err
	}
	ints := []struct {
		name   string
		dst    *int
		lo, hi int
	}{{"concurrency", &c.Concurrency, 1, 10_000}, {"queueDepth", &c.QueueDepth, 1, 100_000}, {"waitForReplicas", &c.WaitForReplicas, 0, 100}}
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
