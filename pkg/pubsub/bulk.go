package pubsub

import (
	"context"
	"sync"
)

// bulkChunk bounds the messages of a PublishBulk sent to the broker
// together (and the goroutines running their middleware).
const bulkChunk = 1000

// bulkParallelism is how many messages of a PublishBulk are in flight at
// once to a broker that is not a BulkPublisher.
const bulkParallelism = 16

// PublishBulk publishes ms through the broker called name, each as
// Publish does, inside the middleware with its own context (ctxs[i] for
// ms[i]; ctx when ctxs is nil), and returns one answer per message, in
// order. With a broker that is a BulkPublisher the first try of every
// message goes to it together (bulkChunk at a time), once each message's
// middleware let it through or answered itself; a try the middleware
// makes again goes alone. Another broker takes them bulkParallelism at
// once, in no promised order.
func (s *Service) PublishBulk(ctx context.Context, name string, ms []*Message, ctxs []context.Context) []error {
	errs := make([]error, len(ms))
	n, err := s.acquire(name)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	defer n.use.Release()
	ctxOf := func(i int) context.Context {
		if ctxs == nil || ctxs[i] == nil {
			return ctx
		}
		return ctxs[i]
	}
	bp, ok := n.Broker.(BulkPublisher)
	if !ok {
		var wg sync.WaitGroup
		slots := make(chan struct{}, bulkParallelism)
		for i, m := range ms {
			if errs[i] = CheckTopic(m.Topic); errs[i] != nil {
				continue
			}
			slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-slots; wg.Done() }()
				errs[i] = s.publish(ctxOf(i), n, m, n.Broker.Publish)
			}()
		}
		wg.Wait()
		return errs
	}
	for lo := 0; lo < len(ms); lo += bulkChunk {
		hi := min(lo+bulkChunk, len(ms))
		g := &gathering{ctx: ctx, b: n.Broker, bp: bp, left: hi - lo, sent: make([]*sending, hi-lo)}
		var wg sync.WaitGroup
		for i := lo; i < hi; i++ {
			if errs[i] = CheckTopic(ms[i].Topic); errs[i] != nil {
				g.leave(i - lo)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.publish(ctxOf(i), n, ms[i], func(ctx context.Context, m *Message) error {
					return g.send(ctx, i-lo, m)
				})
				g.leave(i - lo)
			}()
		}
		wg.Wait()
	}
	return errs
}

// gathering collects the first try of each message of a chunk, and sends
// them to the broker together once every message's middleware has either
// tried or ended without trying.
type gathering struct {
	ctx  context.Context // the bulk publish's
	b    Broker
	bp   BulkPublisher
	mu   sync.Mutex
	left int        // messages neither tried nor ended
	sent []*sending // each message's first try; nil until it comes
	done bool       // sent to the broker
}

// sending is a message's first try, and its answer once done is closed.
type sending struct {
	ctx  context.Context // its latest try's, while not sent
	m    *Message
	done chan struct{}
	err  error
}

// send is message i's try: its first waits for the broker's answer to the
// whole chunk (or its ctx), a try again while that is pending waits for
// the same answer, and one after it goes alone.
func (g *gathering) send(ctx context.Context, i int, m *Message) error {
	g.mu.Lock()
	if g.done {
		g.mu.Unlock()
		return g.b.Publish(ctx, m)
	}
	sd := g.sent[i]
	last := false
	if sd == nil {
		sd = &sending{m: m, done: make(chan struct{})}
		g.sent[i] = sd
		g.left--
		last = g.left == 0
	}
	sd.ctx = ctx
	g.mu.Unlock()
	if last {
		g.flush()
	}
	select {
	case <-sd.done:
		return sd.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// leave says that message i's middleware has ended: one that never tried
// counts as done with trying.
func (g *gathering) leave(i int) {
	g.mu.Lock()
	if g.done || g.sent[i] != nil {
		g.mu.Unlock()
		return
	}
	g.sent[i] = &sending{done: make(chan struct{})} // nothing to send
	g.left--
	last := g.left == 0
	g.mu.Unlock()
	if last {
		g.flush()
	}
}

// flush sends every message tried to the broker at once, and answers each;
// one whose try gave up meanwhile (its ctx ended) is not sent.
func (g *gathering) flush() {
	g.mu.Lock()
	g.done = true
	var ms []*Message
	var sds []*sending
	for _, sd := range g.sent {
		switch {
		case sd.m == nil:
		case sd.ctx.Err() != nil:
			sd.err = sd.ctx.Err()
		default:
			ms = append(ms, sd.m)
			sds = append(sds, sd)
		}
	}
	g.mu.Unlock()
	if len(ms) > 0 {
		for k, err := range g.bp.PublishBulk(g.ctx, ms) {
			sds[k].err = err
		}
	}
	for _, sd := range g.sent {
		close(sd.done)
	}
}
