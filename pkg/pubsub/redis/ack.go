package redis

import (
	"context"
	"errors"
	"sync"

	"github.com/redis/go-redis/v9"
)

// acker sends the acknowledgements of the broker's handlers together: a
// handler that ends while another's XACK is on its way queues its own, and
// the next round trip carries every one queued, one XACK per stream and
// group (XACK takes many ids) in one pipeline. A handler's ack returns
// once Redis answered for its entry, as a lone XACK would: the entry is
// forgotten only then, and an entry whose XACK failed stays pending, to be
// delivered again. No goroutine and no delay: an ack alone goes at once.
type acker struct {
	mu    sync.Mutex
	queue []*ackReq
	busy  bool // an ack's round trip is on its way; its sender sends the queue next
}

type ackReq struct {
	topic, group, id string
	done             chan error // its answer, or errLead
}

// errLead tells a queued ack to send the queue itself: the one that sent
// the previous round trip has its own answer and goes back to its work.
var errLead = errors.New("send the queued acknowledgements")

// ack acknowledges e, with the acks queued meanwhile, and returns Redis's
// answer for it.
func (b *Broker) ack(e *entry) error {
	r := &ackReq{topic: e.sub.topic, group: e.sub.group, id: e.id, done: make(chan error, 1)}
	a := &b.acks
	a.mu.Lock()
	a.queue = append(a.queue, r)
	if a.busy {
		a.mu.Unlock()
		if err := <-r.done; err != errLead {
			return err
		}
		a.mu.Lock()
	}
	a.busy = true
	batch := a.queue // r among them
	a.queue = nil
	a.mu.Unlock()
	b.sendAcks(batch)
	a.mu.Lock()
	if len(a.queue) > 0 {
		a.queue[0].done <- errLead // busy stays: the first queued sends next
	} else {
		a.busy = false
	}
	a.mu.Unlock()
	return <-r.done
}

// sendAcks acknowledges batch in one round trip, and answers each.
func (b *Broker) sendAcks(batch []*ackReq) {
	type stream struct{ topic, group string }
	var order []stream
	ids := map[stream][]string{}
	reqs := map[stream][]*ackReq{}
	for _, r := range batch {
		s := stream{r.topic, r.group}
		if _, ok := ids[s]; !ok {
			order = append(order, s)
		}
		ids[s] = append(ids[s], r.id)
		reqs[s] = append(reqs[s], r)
	}
	cmds := make([]*redis.IntCmd, len(order))
	ctx := context.Background()
	if len(order) == 1 {
		s := order[0]
		cmds[0] = b.client.XAck(ctx, s.topic, s.group, ids[s]...)
	} else {
		_, _ = b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, s := range order {
				cmds[i] = p.XAck(ctx, s.topic, s.group, ids[s]...)
			}
			return nil
		})
	}
	for i, s := range order {
		err := cmds[i].Err()
		for _, r := range reqs[s] {
			r.done <- err
		}
	}
}
