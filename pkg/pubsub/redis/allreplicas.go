package redis

// Delivery to every replica (subscription metadata deliverToAllReplicas,
// beyond Dapr). Such a subscription reads through a consumer group of this
// replica's own, named as its consumer (<consumerID>-<pod or host>-
// <random>) and created at the stream's end ($): the replica receives each
// event published while it is subscribed, and a new replica starts at the
// end. Everything else (acknowledgement, redelivery after
// processingTimeout, the idle time kept fresh) is as in a shared group.
//
// Each such group is listed in the hash tandem:pubsub:replica-groups:<topic>
// (group -> consumerID) and has a heartbeat key,
// tandem:pubsub:replica-alive:<group>:<topic>, which its replica sets with
// a TTL of replicaTimeout every replicaTimeout/3. Every replica subscribed
// so to a topic sweeps the list as often: a group of its consumerID whose
// heartbeat expired (its replica gone longer than replicaTimeout) is
// destroyed (XGROUP DESTROY) with the events still pending in it, which are
// counted (Dropped) and logged. A replica that unsubscribes or closes
// destroys its own group at once.

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/pkg/pubsub"
)

// replicaGroup is what a subscription of every replica knows of its own
// group.
type replicaGroup struct {
	timeout time.Duration  // replicaTimeout
	tending sync.WaitGroup // tend, which leave waits for: no heartbeat after the group is gone
}

// registryKey is the hash of topic's per-replica groups (group ->
// consumerID).
func registryKey(topic string) string { return "tandem:pubsub:replica-groups:" + topic }

// aliveKey is group's heartbeat on topic.
func aliveKey(group, topic string) string {
	return "tandem:pubsub:replica-alive:" + group + ":" + topic
}

// dropScript destroys group ARGV[1] of stream KEYS[1] when its heartbeat
// KEYS[3] expired, or at once when ARGV[2] is "1", removes it from the
// registry KEYS[2], and returns how many entries were pending in it; -1
// when its replica is alive, -2 when there was no such group (only
// listed).
var dropScript = redis.NewScript(`
if ARGV[2] ~= "1" and redis.call("EXISTS", KEYS[3]) == 1 then
  return -1
end
local n = -2
local p = redis.pcall("XPENDING", KEYS[1], ARGV[1])
if type(p) == "table" and p.err == nil then
  n = p[1]
  redis.call("XGROUP", "DESTROY", KEYS[1], ARGV[1])
end
redis.call("HDEL", KEYS[2], ARGV[1])
redis.call("DEL", KEYS[3])
return n
`)

// join sets sub up as the subscription metadata md says (with
// deliverToAllReplicas, in this replica's own group, its heartbeat set
// first) and creates its consumer group.
func (b *Broker) join(ctx context.Context, sub *subscription, md map[string]string) error {
	on, timeout, err := pubsub.AllReplicas(md)
	if err != nil {
		return fmt.Errorf("pubsub %q: subscription to topic %q: %w", b.name, sub.topic, err)
	}
	if on {
		sub.group, sub.own = b.consumer, &replicaGroup{timeout: timeout}
		if err := b.beat(ctx, sub); err != nil {
			return err
		}
	}
	return b.createGroup(ctx, sub)
}

// beat sets sub's heartbeat and lists its group.
func (b *Broker) beat(ctx context.Context, sub *subscription) error {
	_, err := b.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, aliveKey(sub.group, sub.topic), b.cfg.Group, sub.own.timeout)
		p.HSet(ctx, registryKey(sub.topic), sub.group, b.cfg.Group)
		return nil
	})
	return b.wrap(fmt.Sprintf("heartbeat of consumer group %q of stream %q", sub.group, sub.topic), err)
}

// tend keeps sub's heartbeat and sweeps the groups of replicas gone, at
// once and every replicaTimeout/3, until ctx ends.
func (b *Broker) tend(ctx context.Context, sub *subscription) {
	t := time.NewTicker(sub.own.timeout / 3)
	defer t.Stop()
	for {
		if err := b.beat(ctx, sub); err != nil {
			if ctx.Err() != nil {
				return
			}
			b.down.fail(err)
		} else {
			b.sweep(ctx, sub)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep destroys the groups of sub's topic and consumerID whose replica is
// gone.
func (b *Broker) sweep(ctx context.Context, sub *subscription) {
	groups, err := b.client.HGetAll(ctx, registryKey(sub.topic)).Result()
	if err != nil {
		if ctx.Err() == nil && !isReply(err) {
			b.down.fail(b.wrap("listing the replicas' consumer groups", err))
		}
		return
	}
	for group, owner := range groups {
		if owner != b.cfg.Group || group == sub.group {
			continue
		}
		n, err := b.drop(ctx, sub.topic, group, false)
		if err != nil || n < 0 { // alive, or never created
			continue
		}
		b.dropped(sub.topic, n)
		b.log.Warn("destroyed the consumer group of a replica gone longer than replicaTimeout (deliverToAllReplicas); the events pending in it are dropped",
			"topic", sub.topic, "group", group, "replicaTimeout", sub.own.timeout, "dropped", n)
	}
}

// drop destroys topic's group when its replica is gone (or at once when
// now), and returns how many events were pending in it: as dropScript.
func (b *Broker) drop(ctx context.Context, topic, group string, now bool) (int64, error) {
	force := "0"
	if now {
		force = "1"
	}
	n, err := dropScript.Run(ctx, b.client, []string{topic, registryKey(topic), aliveKey(group, topic)}, group, force).Int64()
	if err != nil && ctx.Err() == nil && !isReply(err) {
		b.down.fail(b.wrap(fmt.Sprintf("destroying consumer group %q of stream %q", group, topic), err))
	}
	return n, err
}

// leave destroys sub's own group, once its reading and heartbeat have
// ended: after the handlers it started have finished (up to
// processingTimeout), unless the broker is closing.
func (b *Broker) leave(sub *subscription) {
	sub.own.tending.Wait()
	deadline := time.Now().Add(b.cfg.ProcessingTimeout)
	for b.ctx.Err() == nil && b.inFlight(sub) && time.Now().Before(deadline) {
		sleep(b.ctx, 20*time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := b.drop(ctx, sub.topic, sub.group, true)
	if err != nil {
		b.log.Warn("could not destroy this replica's consumer group (deliverToAllReplicas): another replica will after replicaTimeout",
			"topic", sub.topic, "group", sub.group, "err", err)
		return
	}
	if n > 0 {
		b.dropped(sub.topic, n)
		b.log.Warn("unsubscribed: destroyed this replica's consumer group (deliverToAllReplicas) with events not yet acknowledged; they are dropped",
			"topic", sub.topic, "group", sub.group, "dropped", n)
	}
}

// inFlight reports whether a handler runs an event of sub.
func (b *Broker) inFlight(sub *subscription) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.held {
		if e.sub == sub && e.started {
			return true
		}
	}
	return false
}

// groupGone says, once, that sub's consumer group was found gone and is
// created again.
func (b *Broker) groupGone(sub *subscription) {
	if sub.own == nil {
		b.log.Warn("consumer group was gone (Redis restarted empty or was flushed): created again; the events Redis lost are not delivered",
			"topic", sub.topic, "group", sub.group)
		return
	}
	b.log.Warn("this replica's consumer group (deliverToAllReplicas) was gone: another replica destroyed it, not having seen this one for replicaTimeout, or Redis lost it; created again at the stream's end: the events published meanwhile are not delivered here",
		"topic", sub.topic, "group", sub.group)
}

// dropped counts n events dropped with a replica's group on topic.
func (b *Broker) dropped(topic string, n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drops == nil {
		b.drops = map[string]int64{}
	}
	b.drops[topic] += n
}

// Dropped counts, by topic, the events this broker dropped with the
// consumer group of a replica (deliverToAllReplicas): one gone longer than
// replicaTimeout, or its own on unsubscribing with events not yet
// acknowledged (pubsub.Dropper).
func (b *Broker) Dropped() map[string]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.drops)
}

var _ pubsub.Dropper = (*Broker)(nil)
