package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/redisconn"
	"github.com/tandem-run/tandem/pkg/pubsub"
)

// read reads the subscription's new entries into the queue until ctx
// ends. It reads only as many as there are free slots, and waits for new
// entries holding one slot, so a quiet topic does not starve a busy one.
func (b *Broker) read(ctx context.Context, sub *subscription) {
	r := &reader{b: b, sub: sub}
	defer r.close()
	defer b.releaseQueued(sub)
	stop := context.AfterFunc(ctx, r.unblock)
	defer stop()
	backoff := 50 * time.Millisecond
	for b.acquire(ctx) {
		n := 1 + b.tryAcquire(b.cfg.QueueDepth-1)
		msgs, err := r.xread(ctx, n, -1)
		if err == nil && len(msgs) == 0 {
			b.freeSlots(n - 1)
			n = 1
			msgs, err = r.xread(ctx, 1, b.block)
		}
		b.freeSlots(n - len(msgs))
		if err != nil {
			if r.failed(ctx, err) {
				sleep(ctx, backoff)
				backoff = min(2*backoff, 2*time.Second)
			}
			continue
		}
		backoff = 50 * time.Millisecond
		r.groupLost = false
		b.down.ok()
		b.enqueue(sub, msgs, nil)
	}
}

// reader is one subscription's reading, on a connection of its own, so
// that ending the subscription can unblock its XREADGROUP at once. In a
// cluster the connection is to the master of the stream's slot.
type reader struct {
	b         *Broker
	sub       *subscription
	node      *redis.Client // conn's client, to unblock it
	conn      *redis.Conn
	id        atomic.Int64 // conn's client id, 0 when none
	mu        sync.Mutex   // node, for unblock
	groupLost bool         // the group was found gone and created again
}

// xread reads up to count new entries, waiting up to block for one (-1:
// not at all).
func (r *reader) xread(ctx context.Context, count int, block time.Duration) ([]redis.XMessage, error) {
	if r.conn == nil {
		node, err := r.b.nodeOf(ctx, r.sub.topic)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.node = node
		r.mu.Unlock()
		r.conn = node.Conn()
		id, err := r.conn.ClientID(ctx).Result()
		if err != nil {
			r.close()
			r.b.reloadSlots(ctx)
			return nil, err
		}
		r.id.Store(id)
	}
	if ctx.Err() != nil {
		return nil, nil
	}
	streams, err := r.conn.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: r.sub.group, Consumer: r.b.consumer, Streams: []string{r.sub.topic, ">"}, Count: int64(count), Block: block,
	}).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case err != nil:
		if !strings.HasPrefix(err.Error(), "NOGROUP") {
			// The connection may be broken, or the server no longer the
			// master of the stream (a failover, a slot moved): a new one
			// next time, to the master the cluster names then.
			r.close()
			r.b.reloadSlots(ctx)
		}
		return nil, err
	case len(streams) == 0:
		return nil, nil
	}
	return streams[0].Messages, nil
}

// nodeOf returns the client of the server that holds topic: in a cluster
// the master of its slot, else the client itself.
func (b *Broker) nodeOf(ctx context.Context, topic string) (*redis.Client, error) {
	switch c := b.client.(type) {
	case *redis.Client:
		return c, nil
	case *redis.ClusterClient:
		return c.MasterForKey(ctx, topic)
	}
	return nil, fmt.Errorf("pubsub %q: a %T cannot hold a subscription's connection", b.name, b.client)
}

// reloadSlots makes a cluster client read the cluster's slots again, as a
// subscription's connection found its node gone or no longer the
// stream's master. The connection is the node's own, whose errors and
// MOVED answers do not tell the cluster client; without it the client
// would name the same node until a call of its own met a MOVED, or for
// up to a minute.
func (b *Broker) reloadSlots(ctx context.Context) {
	if c, ok := b.client.(*redis.ClusterClient); ok {
		c.ReloadState(ctx)
	}
}

// failed handles a read's error, and reports whether to wait before the
// next read.
func (r *reader) failed(ctx context.Context, err error) bool {
	switch {
	case ctx.Err() != nil:
		return false
	case strings.HasPrefix(err.Error(), "NOGROUP"):
		// Redis lost the group (restarted empty, or flushed; a replica's
		// own, destroyed as gone): create it again, and say so once.
		if !r.groupLost {
			r.groupLost = true
			r.b.groupGone(r.sub)
		}
		if err := r.b.createGroup(ctx, r.sub); err != nil {
			r.b.down.fail(err)
			return true
		}
		return false
	case strings.HasPrefix(err.Error(), "UNBLOCKED"):
		return false // the stream was deleted while we waited: read again
	}
	if _, _, moved := redisconn.Redirected(err); moved {
		// The stream's slot moved (a resharding, a failover): xread read
		// the slots again; Redis answers, so nothing is paused. Wait the
		// backoff for the new slots, then read from the node they name.
		return true
	}
	r.b.down.fail(r.b.wrap("XREADGROUP", err))
	return true
}

// unblock ends a wait of the reader's XREADGROUP.
func (r *reader) unblock() {
	r.mu.Lock()
	node := r.node
	r.mu.Unlock()
	if id := r.id.Load(); id != 0 && node != nil {
		_ = node.ClientUnblock(context.Background(), id).Err()
	}
}

func (r *reader) close() {
	if r.conn != nil {
		r.id.Store(0)
		_ = r.conn.Close()
		r.conn = nil
	}
}

// reclaim claims, every RedeliverInterval, once at the start and whenever
// this broker released entries, the subscription's entries pending longer
// than ProcessingTimeout (a released entry counts as that).
func (b *Broker) reclaim(ctx context.Context, sub *subscription) {
	t := time.NewTicker(b.cfg.RedeliverInterval)
	defer t.Stop()
	for {
		released := b.releasedSignal()
		b.claim(ctx, sub)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-released:
		}
	}
}

// claim claims as many idle entries as there are free slots.
func (b *Broker) claim(ctx context.Context, sub *subscription) {
	start := "0-0"
	for ctx.Err() == nil {
		n := b.tryAcquire(b.cfg.QueueDepth)
		if n == 0 {
			return
		}
		msgs, next, err := b.client.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: sub.topic, Group: sub.group, Consumer: b.consumer, MinIdle: b.cfg.ProcessingTimeout, Start: start, Count: int64(n),
		}).Result()
		b.freeSlots(n - len(msgs))
		if err != nil {
			if !isReply(err) && ctx.Err() == nil {
				b.down.fail(b.wrap("XAUTOCLAIM", err))
			}
			return
		}
		b.enqueue(sub, msgs, b.attempts(ctx, sub, msgs))
		if next == "0-0" || next == "" {
			return
		}
		start = next
	}
}

// attempts returns how many times each of msgs, just claimed, was
// delivered; nil when Redis does not say.
func (b *Broker) attempts(ctx context.Context, sub *subscription, msgs []redis.XMessage) map[string]int {
	if len(msgs) == 0 {
		return nil
	}
	b.mu.Lock()
	count := int64(len(msgs) + len(b.held))
	b.mu.Unlock()
	pending, err := b.client.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: sub.topic, Group: sub.group, Start: msgs[0].ID, End: msgs[len(msgs)-1].ID, Count: count, Consumer: b.consumer,
	}).Result()
	if err != nil {
		return nil
	}
	out := make(map[string]int, len(pending))
	for _, p := range pending {
		out[p.ID] = int(p.RetryCount)
	}
	return out
}

// enqueue hands msgs, which each hold a slot, to the workers; one the
// broker already holds only gives its slot back.
func (b *Broker) enqueue(sub *subscription, msgs []redis.XMessage, attempts map[string]int) {
	for _, m := range msgs {
		e := &entry{sub: sub, id: m.ID, msg: decode(sub.topic, m), attempt: 1}
		if attempts != nil {
			e.attempt = attempts[m.ID]
		}
		k := key{sub.group, sub.topic, m.ID}
		b.mu.Lock()
		_, dup := b.held[k]
		if !dup {
			b.held[k] = e
		}
		b.mu.Unlock()
		if dup {
			<-b.slots
			continue
		}
		b.queue <- e // never blocks: the queue has room for every slot
	}
}

// decode reads a stream entry as daprd writes it: "data", and "metadata"
// as JSON (an entry without readable metadata has none).
func decode(topic string, m redis.XMessage) pubsub.Message {
	msg := pubsub.Message{Topic: topic}
	if s, ok := m.Values["data"].(string); ok {
		msg.Data = []byte(s)
	}
	if s, ok := m.Values["metadata"].(string); ok {
		if err := json.Unmarshal([]byte(s), &msg.Metadata); err != nil {
			msg.Metadata = nil
		}
	}
	return msg
}

// acquire takes a slot, waiting until one is free or ctx ends.
func (b *Broker) acquire(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	select {
	case b.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// tryAcquire takes up to n free slots without waiting, and returns how
// many it took.
func (b *Broker) tryAcquire(n int) int {
	for i := range n {
		select {
		case b.slots <- struct{}{}:
		default:
			return i
		}
	}
	return n
}

// freeSlots gives n slots back.
func (b *Broker) freeSlots(n int) {
	for range n {
		<-b.slots
	}
}

// isReply reports whether err is Redis's answer (such as NOGROUP), not a
// failure to reach it.
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.ErrClosed)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
