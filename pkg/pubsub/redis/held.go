package redis

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// setIdleScript sets the idle time of the entries of stream KEYS[1]
// (ARGV[4], ...) that are pending for consumer ARGV[2] of group ARGV[1] to
// ARGV[3] milliseconds, without counting a delivery, and returns the ids
// of those another consumer holds now. An entry pending for no one (acknowledged
// by another, or deleted) is left alone.
var setIdleScript = redis.NewScript(`
local taken = {}
for i = 4, #ARGV do
  local p = redis.call("XPENDING", KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] then
    if p[1][2] == ARGV[2] then
      redis.call("XCLAIM", KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], "IDLE", ARGV[3], "JUSTID")
    else
      taken[#taken + 1] = ARGV[i]
    end
  end
end
return taken
`)

// setIdleBatch bounds the ids of one setIdleScript run, which Redis runs
// alone.
const setIdleBatch = 500

// keepFresh resets the idle time of every entry the broker holds, every
// ProcessingTimeout/3, so that no consumer claims an entry it is about to
// deliver or delivering. An entry another consumer claimed all the same
// (Redis did not answer for that long) is not delivered here unless it
// already was.
func (b *Broker) keepFresh() {
	defer b.wg.Done()
	t := time.NewTicker(max(b.cfg.ProcessingTimeout/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		bySub := map[*subscription][]*entry{}
		b.mu.Lock()
		for _, e := range b.held {
			if !e.lost {
				bySub[e.sub] = append(bySub[e.sub], e)
			}
		}
		b.mu.Unlock()
		for sub, es := range bySub {
			b.setIdle(b.ctx, sub, es, 0)
		}
	}
}

// release leaves es, entries of sub the broker holds and will not
// deliver, for the next consumer to claim at once, and forgets them.
func (b *Broker) release(sub *subscription, es []*entry) {
	b.setIdle(context.Background(), sub, es, b.cfg.ProcessingTimeout)
	for _, e := range es {
		b.forget(e)
	}
	b.signalReleased()
}

// releaseQueued releases the entries sub read that no handler has started
// (its reading has ended): the workers then skip them.
func (b *Broker) releaseQueued(sub *subscription) {
	var es []*entry
	b.mu.Lock()
	for _, e := range b.held {
		if e.sub == sub && !e.started && !e.lost {
			e.lost = true
			es = append(es, e)
		}
	}
	b.mu.Unlock()
	b.setIdle(context.Background(), sub, es, b.cfg.ProcessingTimeout)
	if len(es) > 0 {
		b.signalReleased()
	}
}

// releasedSignal is closed at the next release of entries.
func (b *Broker) releasedSignal() <-chan struct{} {
	b.relMu.Lock()
	defer b.relMu.Unlock()
	return b.released
}

// signalReleased wakes the subscriptions waiting to claim.
func (b *Broker) signalReleased() {
	b.relMu.Lock()
	defer b.relMu.Unlock()
	close(b.released)
	b.released = make(chan struct{})
}

// setIdle sets the idle time of es, entries of sub, and marks those
// another consumer took as lost.
func (b *Broker) setIdle(ctx context.Context, sub *subscription, es []*entry, idle time.Duration) {
	for len(es) > 0 {
		batch := es[:min(len(es), setIdleBatch)]
		es = es[len(batch):]
		args := make([]any, 0, 3+len(batch))
		args = append(args, sub.group, b.consumer, idle.Milliseconds())
		for _, e := range batch {
			args = append(args, e.id)
		}
		taken, err := setIdleScript.Run(ctx, b.client, []string{sub.topic}, args...).StringSlice()
		if err != nil {
			if !isReply(err) && ctx.Err() == nil {
				b.down.fail(b.wrap("refreshing pending entries", err))
			}
			continue
		}
		b.down.ok()
		if len(taken) == 0 {
			continue
		}
		b.mu.Lock()
		for _, id := range taken {
			if e := b.held[key{sub.group, sub.topic, id}]; e != nil {
				e.lost = true
			}
		}
		b.mu.Unlock()
	}
}

// Held counts the events the broker holds, by topic: read from Redis and
// not yet acknowledged, queued for a handler or in one (pubsub.Holder).
func (b *Broker) Held() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int{}
	for k, e := range b.held {
		if !e.lost {
			out[k.topic]++
		}
	}
	return out
}
