// Package redis is the pubsub.redis component on Redis Streams
// (github.com/redis/go-redis/v9), wire-compatible with daprd's: a topic is
// a stream, an event an entry with the fields "data" and "metadata" (the
// publish metadata as JSON), and the subscribers of a consumerID form one
// consumer group, created at the stream's start (XGROUP CREATE ... 0
// MKSTREAM), so events published before anyone subscribed are delivered.
// A daprd publisher and this subscriber, or the reverse, share a stream.
//
// Each broker is a consumer of its own in the group, named
// <consumerID>-<pod or host name>-<random>: Redis knows which replica holds
// which event, XPENDING and XINFO CONSUMERS show each replica's backlog,
// and a broker tells an event it holds from one another replica claimed
// (daprd names every replica's consumer consumerID, so all of that is one
// consumer to Redis).
//
// Delivery is at least once:
//   - Each subscription reads new entries (XREADGROUP >) into a queue the
//     broker's Concurrency workers take from. Entries read and not yet
//     finished are at most QueueDepth + Concurrency, over all topics.
//   - An entry is acknowledged (XACK) only once its handler returned nil.
//     A handler's error leaves it pending. Acknowledgements of handlers
//     that end while one is on its way go together, one XACK per stream
//     in one pipeline (ack.go).
//   - Every RedeliverInterval each subscription claims (XAUTOCLAIM) the
//     entries pending longer than ProcessingTimeout: a failed handler's,
//     or those of a consumer that died.
//   - While the broker holds an entry (queued or in a handler) it resets
//     the entry's idle time every ProcessingTimeout/3, so no one claims
//     it: a handler slower than ProcessingTimeout is never delivered the
//     same event a second time in parallel (daprd's is: dapr/components-
//     contrib#4599).
//   - When a subscription ends, the entries it read and had not yet handed
//     to a handler are marked idle, for the next subscription to claim at
//     once; on Close, so are all the broker holds.
//   - A consumer group that is gone (Redis restarted empty, or flushed) is
//     created again and reading goes on, with one log line. Redis
//     unreachable is one log line too, and one when it answers again.
//
// With the subscription metadata deliverToAllReplicas a subscription reads
// through a consumer group of this replica's own, at the stream's end, so
// every replica receives every event; groups of replicas gone longer than
// replicaTimeout are destroyed with what they held (allreplicas.go).
//
// Each subscription holds one connection of the client's pool, on which it
// waits for new entries; ending the subscription ends that wait at once
// (CLIENT UNBLOCK).
//
// The client is one server, a Sentinel-managed master or a Redis Cluster
// (github.com/tandem-run/tandem/internal/redisconn makes it from the
// component's metadata). Every command and script names one stream, so a
// cluster routes each to the node of its slot; a subscription waits on a
// connection to the master of its stream's slot, and takes a new one
// after any error (a failover, a slot moved, a master turned replica).
package redis

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/redisconn"
	"github.com/tandem-run/tandem/pkg/pubsub"
)

// Broker is a pubsub.redis broker. It is safe for concurrent use.
type Broker struct {
	name     string // component name, for messages
	client   redis.UniversalClient
	addr     string
	cfg      Config
	consumer string // this broker's consumer name in every group
	log      *slog.Logger
	block    time.Duration // how long a read waits for new entries

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	slots  chan struct{} // one per entry read and not yet finished
	queue  chan *entry   // to the workers
	wg     sync.WaitGroup
	mu     sync.Mutex
	held   map[key]*entry // queued or in a handler
	closed bool
	drops  map[string]int64 // events dropped with replicas' groups, by topic (allreplicas.go)
	acks   acker            // acknowledgements on their way (ack.go)
	down   episode
	// released is closed, and replaced, when entries are released: the
	// broker's subscriptions then claim at once rather than at their next
	// RedeliverInterval (a subscription that follows one that ended, on
	// the same topic, takes over what it held without waiting).
	relMu    sync.Mutex
	released chan struct{}
}

type key struct{ group, topic, id string }

// entry is a stream entry this broker holds, and the subscription that
// read it.
type entry struct {
	sub     *subscription
	id      string
	msg     pubsub.Message
	attempt int
	started bool // handed to its handler; b.mu
	lost    bool // not to be delivered here: another consumer claimed it, or it was released; b.mu
}

type subscription struct {
	ctx   context.Context // the Subscribe call's
	topic string
	h     pubsub.Handler
	group string        // its consumer group: consumerID, or this replica's own (allreplicas.go)
	own   *replicaGroup // this replica's own group, nil when shared
}

// Open returns a broker on the connection cfg.Conn describes, with its own
// client; see New.
func Open(name string, cfg Config) *Broker {
	return New(name, cfg.Conn.NewClient(), cfg)
}

// New returns a broker on client, configured by cfg as ParseMetadata
// returns it (zero numbers are the defaults); name is the component's
// name, for messages. It starts its workers at once, and connects on first
// use.
func New(name string, client redis.UniversalClient, cfg Config) *Broker {
	if cfg.Replica == "" {
		cfg.Replica, _ = os.Hostname()
	}
	cfg.Concurrency = cmp.Or(max(cfg.Concurrency, 0), DefaultConcurrency)
	cfg.QueueDepth = cmp.Or(max(cfg.QueueDepth, 0), DefaultQueueDepth)
	cfg.ProcessingTimeout = cmp.Or(max(cfg.ProcessingTimeout, 0), DefaultProcessingTimeout)
	cfg.RedeliverInterval = cmp.Or(max(cfg.RedeliverInterval, 0), DefaultRedeliverInterval)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", name, "type", "pubsub.redis")
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		name: name, client: client, addr: redisconn.Addr(client), cfg: cfg, log: log,
		consumer: cfg.Group + "-" + cfg.Replica + "-" + pubsub.NewUUID()[:8],
		block:    2 * time.Second,
		ctx:      ctx, cancel: cancel,
		slots:    make(chan struct{}, cfg.QueueDepth+cfg.Concurrency),
		queue:    make(chan *entry, cfg.QueueDepth+cfg.Concurrency),
		released: make(chan struct{}),
		held:     map[key]*entry{},
	}
	if len(cfg.Conn.Addrs) > 0 {
		b.addr = cfg.Conn.Addr()
	}
	b.down.log = log
	b.wg.Add(cfg.Concurrency + 1)
	for range cfg.Concurrency {
		go b.work()
	}
	go b.keepFresh()
	return b
}

// Consumer is this broker's consumer name in its consumer groups.
func (b *Broker) Consumer() string { return b.consumer }

// Addr is the address of the Redis server, for telemetry.
func (b *Broker) Addr() string { return b.addr }

// Ping checks that the server answers, with this broker's credentials and
// database (pubsub.Pinger).
func (b *Broker) Ping(ctx context.Context) error {
	if err := b.client.Ping(ctx).Err(); err != nil {
		return b.wrap("ping", err)
	}
	return nil
}

// Publish adds m to its topic's stream, trimmed to about MaxLenApprox
// entries when set, and returns once Redis answered.
func (b *Broker) Publish(ctx context.Context, m *pubsub.Message) error {
	return b.PublishBulk(ctx, []*pubsub.Message{m})[0]
}

// PublishBulk adds ms to their topics' streams as Publish does, in one
// round trip: their XADDs pipelined (in a cluster, one pipeline per node),
// and with WaitForReplicas one WAIT after those of each stream. Each
// message has its own answer, nil once Redis holds it.
func (b *Broker) PublishBulk(ctx context.Context, ms []*pubsub.Message) []error {
	errs := make([]error, len(ms))
	if b.isClosed() {
		for i := range errs {
			errs[i] = fmt.Errorf("pubsub %q: %w", b.name, pubsub.ErrClosed)
		}
		return errs
	}
	args := make([]*redis.XAddArgs, 0, len(ms))
	idx := make([]int, 0, len(ms)) // args[j] is ms[idx[j]]
	for i, m := range ms {
		values := []any{"data", m.Data}
		if m.Metadata != nil {
			md, err := json.Marshal(m.Metadata)
			if err != nil {
				errs[i] = fmt.Errorf("encoding the metadata: %w", err)
				continue
			}
			values = append(values, "metadata", md)
		}
		args = append(args, &redis.XAddArgs{Stream: m.Topic, Values: values, MaxLen: b.cfg.MaxLenApprox, Approx: true})
		idx = append(idx, i)
	}
	if len(args) == 0 {
		return errs
	}
	if b.cfg.WaitForReplicas > 0 {
		// WAIT waits for one connection's writes: each stream's entries
		// and its WAIT on one connection to its master.
		byStream := map[string][]int{}
		var streams []string
		for j, a := range args {
			if _, ok := byStream[a.Stream]; !ok {
				streams = append(streams, a.Stream)
			}
			byStream[a.Stream] = append(byStream[a.Stream], j)
		}
		for _, stream := range streams {
			js := byStream[stream]
			some := make([]*redis.XAddArgs, len(js))
			for k, j := range js {
				some[k] = args[j]
			}
			for k, err := range b.publishWaiting(ctx, some) {
				errs[idx[js[k]]] = err
			}
		}
		return errs
	}
	if len(args) == 1 {
		errs[idx[0]] = b.wrap("XADD", b.client.XAdd(ctx, args[0]).Err())
		return errs
	}
	cmds := make([]*redis.StringCmd, len(args))
	_, _ = b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for j, a := range args {
			cmds[j] = p.XAdd(ctx, a)
		}
		return nil
	})
	for j, c := range cmds {
		errs[idx[j]] = b.wrap("XADD", c.Err())
	}
	return errs
}

// publishWaiting adds entries to one stream and waits until
// WaitForReplicas replicas have them: the XADDs and WAIT in one pipeline,
// on one connection to the master of the stream, as WAIT waits for that
// connection's writes. It waits at most half the read timeout; fewer
// replicas by then is an error for each entry added (it is in Redis, and
// may be delivered). In a cluster it follows the stream's slot as it
// moves, as the cluster client would: to the node a MOVED or ASK names
// (ASKING before each XADD for ASK), at most three times.
func (b *Broker) publishWaiting(ctx context.Context, args []*redis.XAddArgs) []error {
	errs := make([]error, len(args))
	all := func(err error) []error {
		for i := range errs {
			errs[i] = b.wrap("XADD", err)
		}
		return errs
	}
	node, err := b.nodeOf(ctx, args[0].Stream)
	if err != nil {
		return all(err)
	}
	asking := false
	var n int64
	var timeout time.Duration
	for redirects := 0; ; redirects++ {
		timeout = max(node.Options().ReadTimeout/2, time.Millisecond)
		var wait *redis.Cmd
		adds := make([]*redis.StringCmd, len(args))
		_, err = node.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, a := range args {
				if asking {
					p.Do(ctx, "ASKING")
				}
				adds[i] = p.XAdd(ctx, a)
			}
			wait = p.Do(ctx, "WAIT", b.cfg.WaitForReplicas, timeout.Milliseconds())
			return nil
		})
		if first := adds[0].Err(); first != nil {
			err = first // a redirect is for the stream, so for every entry
		}
		addr, ask, moved := redisconn.Redirected(err)
		cc, cluster := b.client.(*redis.ClusterClient)
		if !moved || !cluster || redirects == 3 {
			for i, c := range adds {
				errs[i] = b.wrap("XADD", c.Err())
			}
			if werr := wait.Err(); werr != nil {
				for i := range errs {
					if errs[i] == nil {
						errs[i] = b.wrap("WAIT", werr)
					}
				}
				return errs
			}
			n, _ = wait.Int64()
			break
		}
		if node, err = redisconn.Master(ctx, cc, addr); err != nil {
			return all(err)
		}
		asking = ask
	}
	if n < int64(b.cfg.WaitForReplicas) {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("redis at %s: XADD: %d of %d replicas (waitForReplicas) acknowledged the event within %s; it is in Redis but a failover could lose it",
					b.addr, n, b.cfg.WaitForReplicas, timeout)
			}
		}
	}
	return errs
}

// Subscribe creates the topic's consumer group when missing, then delivers
// its events to h until ctx ends or the broker is closed. With the
// subscription metadata deliverToAllReplicas the group is this replica's
// own (allreplicas.go).
func (b *Broker) Subscribe(ctx context.Context, s pubsub.Subscription, h pubsub.Handler) error {
	sub := &subscription{ctx: ctx, topic: s.Topic, h: h, group: b.cfg.Group}
	if err := b.join(ctx, sub, s.Metadata); err != nil {
		return err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		if sub.own != nil {
			b.leave(sub)
		}
		return fmt.Errorf("pubsub %q: %w", b.name, pubsub.ErrClosed)
	}
	defer b.mu.Unlock()
	rctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	b.wg.Add(2)
	go func() {
		defer b.wg.Done()
		defer stop()
		defer cancel()
		b.read(rctx, sub)
		if sub.own != nil {
			b.leave(sub) // once reading ended: nothing creates the group again
		}
	}()
	go func() {
		defer b.wg.Done()
		b.reclaim(rctx, sub)
	}()
	if sub.own != nil {
		b.wg.Add(1)
		sub.own.tending.Add(1)
		go func() {
			defer b.wg.Done()
			defer sub.own.tending.Done()
			b.tend(rctx, sub)
		}()
	}
	return nil
}

// createGroup creates sub's consumer group, and the stream when missing
// (as daprd): a shared group reads from the stream's start, a replica's
// own from its end.
func (b *Broker) createGroup(ctx context.Context, sub *subscription) error {
	start := "0"
	if sub.own != nil {
		start = "$"
	}
	err := b.client.XGroupCreateMkStream(ctx, sub.topic, sub.group, start).Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return b.wrap(fmt.Sprintf("creating consumer group %q of stream %q", sub.group, sub.topic), err)
	}
	return nil
}

// work runs handlers until the broker is closed.
func (b *Broker) work() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case e := <-b.queue:
			b.handle(e)
		}
	}
}

// handle delivers e, then acknowledges it when its handler returned nil.
// An entry whose subscription has ended is left for the next; one that
// another consumer claimed is left to it.
func (b *Broker) handle(e *entry) {
	b.mu.Lock()
	lost := e.lost
	e.started = !lost
	b.mu.Unlock()
	switch {
	case lost:
		b.forget(e)
		return
	case e.sub.ctx.Err() != nil:
		b.release(e.sub, []*entry{e})
		return
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(e.sub.ctx))
	stop := context.AfterFunc(b.ctx, cancel)
	err := e.sub.h(ctx, &pubsub.Delivery{Message: e.msg, ID: e.id, Attempt: e.attempt})
	stop()
	cancel()
	switch {
	case err == nil:
		if err := b.ack(e); err != nil && !isReply(err) {
			// Still pending: delivered again once claimed.
			b.down.fail(b.wrap("XACK", err))
		}
	case b.ctx.Err() != nil, e.sub.ctx.Err() != nil:
		// Canceled by Close, or failed once its subscription ended (a
		// stream that broke with the event unanswered): for the next
		// consumer, at once.
		b.release(e.sub, []*entry{e})
		return
	}
	b.forget(e)
}

// forget drops e from what the broker holds.
func (b *Broker) forget(e *entry) {
	b.mu.Lock()
	delete(b.held, key{e.sub.group, e.sub.topic, e.id})
	b.mu.Unlock()
	<-b.slots
}

// Close stops every subscription, cancels the handlers in flight and waits
// for them (an event whose handler returned nil is still acknowledged),
// leaves the entries it held for other consumers to claim at once, and
// closes the client.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	bySub := map[*subscription][]*entry{}
	b.mu.Lock()
	for _, e := range b.held {
		bySub[e.sub] = append(bySub[e.sub], e)
	}
	b.mu.Unlock()
	for sub, es := range bySub {
		b.release(sub, es)
	}
	return b.client.Close()
}

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// wrap says which server and operation failed.
func (b *Broker) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("pubsub %q: %w", b.name, pubsub.ErrClosed)
	}
	return fmt.Errorf("redis at %s: %s: %w", b.addr, op, err)
}

// episode logs a run of failures once: its first failure, and the first
// success after it. A run that starts within quietFor of the last one
// logged is not logged (connections left broken by a restart fail one by
// one after Redis is back).
type episode struct {
	log     *slog.Logger
	mu      sync.Mutex
	failing bool
	logged  bool      // this run's first failure was logged
	last    time.Time // when a run was last logged
}

// quietFor is how long after logging a run of failures another is not.
const quietFor = time.Minute

func (e *episode) fail(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failing {
		return
	}
	e.failing = true
	if now := time.Now(); e.last.IsZero() || now.Sub(e.last) >= quietFor {
		e.logged, e.last = true, now
		e.log.Warn("pub/sub paused: Redis does not answer; retrying", "err", err)
	}
}

func (e *episode) ok() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failing {
		e.failing = false
		if e.logged {
			e.logged = false
			e.log.Info("pub/sub resumed: Redis answers again")
		}
	}
}

var (
	_ pubsub.Broker        = (*Broker)(nil)
	_ pubsub.Pinger        = (*Broker)(nil)
	_ pubsub.Holder        = (*Broker)(nil)
	_ pubsub.BulkPublisher = (*Broker)(nil)
)
