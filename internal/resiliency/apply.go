package resiliency

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/tandem-run/tandem/internal/invoke"
	"github.com/tandem-run/tandem/internal/invoke/wire"
	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/state"
)

// ErrOpen is returned, wrapped, while a circuit breaker is open. Packages
// that must not import this one (telemetry) recognize it by its method
// CircuitOpen, with errors.As.
var ErrOpen error = openError{}

type openError struct{}

func (openError) Error() string     { return "circuit breaker open" }
func (openError) CircuitOpen() bool { return true }

// breaker is a circuit breaker's state: closed, open until a time, or
// half-open letting a few calls through to test the target.
type breaker struct {
	cfg      BreakerConfig
	mu       sync.Mutex
	failures int
	since    time.Time // when the current interval began (with cfg.Interval)
	openTill time.Time
	half     bool
	trials   int
}

func (b *breaker) allow(now time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Before(b.openTill) {
		return fmt.Errorf("%w after %d consecutive failures; it half-opens in %s", ErrOpen, b.cfg.Trip, b.openTill.Sub(now).Round(time.Millisecond))
	}
	if !b.openTill.IsZero() && !b.half {
		b.half, b.trials = true, 0
	}
	if b.half {
		if b.trials >= b.cfg.MaxRequests {
			return fmt.Errorf("%w: half-open, %d trial calls under way", ErrOpen, b.trials)
		}
		b.trials++
	}
	return nil
}

func (b *breaker) done(ok bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.half {
		b.trials--
		if ok {
			b.half, b.openTill, b.failures, b.since = false, time.Time{}, 0, now
		} else {
			b.openTill = now.Add(b.cfg.Timeout)
			b.half = false
		}
		return
	}
	if ok {
		b.failures = 0
		return
	}
	if b.cfg.Interval > 0 && now.Sub(b.since) >= b.cfg.Interval {
		b.failures, b.since = 0, now // a new interval: the failures of the last are forgotten
	}
	b.failures++
	if b.failures >= b.cfg.Trip {
		b.openTill, b.failures = now.Add(b.cfg.Timeout), 0
	}
}

// runner applies one Policy; it keeps the breaker's state.
type runner struct {
	p *Policy
	b *breaker
}

func newRunner(p *Policy) *runner {
	r := &runner{p: p}
	if p.Breaker != nil {
		r.b = &breaker{cfg: *p.Breaker}
	}
	return r
}

// do runs try until it succeeds, the retries run out, or a failure may not
// be retried. try returns whether it failed (for the breaker and retries)
// and whether a new try is safe. The breaker, when the policy has one, is
// asked before each try and told its outcome; retries wait the policy's
// delay and stop when ctx ends. try gets ctx as it is: the caller applies
// the policy's timeout, since only it knows when a try's result is done with
// (an invocation's streamed answer outlives the try).
func (r *runner) do(ctx context.Context, try func(ctx context.Context) (failed, retryable bool, err error)) error {
	var err error
	for n := 0; ; n++ {
		if r.b != nil {
			if berr := r.b.allow(time.Now()); berr != nil {
				return fmt.Errorf("resiliency %s: %w", r.p.Name, berr)
			}
		}
		failed, retryable, terr := try(ctx)
		if r.b != nil {
			r.b.done(!failed, time.Now())
		}
		err = terr
		if !failed || !retryable || r.p.Retry == nil || (r.p.Retry.MaxRetries >= 0 && n >= r.p.Retry.MaxRetries) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(r.p.Retry.Delay(n + 1)):
		}
	}
}

// Invoker applies the policies of target apps to invocations: a timeout to
// the answer's header (a streamed body is not cut off), retries of calls
// that are safe to repeat (no request body, an idempotent verb, or a
// connection that never reached the peer), and circuit breakers. A 5xx
// answer counts as a failure; the last answer is what the caller gets.
type Invoker struct {
	next    invoke.Caller
	set     *Set
	runners map[string]*runner
}

func idempotent(verb string) bool {
	switch verb {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete, http.MethodTrace:
		return true
	}
	return false
}

// Invoke implements invoke.Caller.
func (w *Invoker) Invoke(ctx context.Context, c *invoke.Call) (*http.Response, error) {
	r := w.runners[c.Target.ID]
	if r == nil {
		return w.next.Invoke(ctx, c)
	}
	noBody := c.Body == nil || c.ContentLength == 0
	header := c.Header.Clone() // Invoke edits the header it is given
	var resp *http.Response
	err := r.do(ctx, func(ctx context.Context) (bool, bool, error) {
		if resp != nil { // a 5xx answer being retried
			_ = resp.Body.Close()
			resp = nil
		}
		call := *c
		call.Header = header.Clone()
		tctx, cancel := ctx, context.CancelFunc(func() {})
		if r.p.Timeout > 0 {
			tctx, cancel = context.WithTimeout(ctx, r.p.Timeout)
		}
		res, err := w.next.Invoke(tctx, &call)
		if err != nil {
			cancel()
			if tctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
				err = &invoke.Error{Kind: wire.KindUnreachable, AppID: c.Target.ID, Err: context.DeadlineExceeded,
					Msg: fmt.Sprintf("app %q: no answer within the timeout of %s (resiliency %s)", c.Target.ID, r.p.Timeout, r.p.Name)}
			}
			if ae := (*invoke.AppError)(nil); errors.As(err, &ae) {
				// A gRPC app's status: an answer, failed as its
				// HTTP form would be (5xx).
				return ae.HTTPStatus() >= 500, noBody && idempotent(c.Verb), err
			}
			var ie *invoke.Error
			if errors.As(err, &ie) && refusal(ie.Kind) {
				// The call itself was refused: the same call fails
				// again, and it says nothing of the target's health.
				return false, false, err
			}
			notReached := ie != nil && (ie.Kind == wire.KindUnreachable || ie.Kind == wire.KindNotFound)
			return true, (noBody && (idempotent(c.Verb) || notReached)), err
		}
		res.Body = &cancelBody{ReadCloser: res.Body, cancel: cancel}
		resp = res
		return res.StatusCode >= 500, noBody && idempotent(c.Verb), nil
	})
	if resp != nil {
		return resp, nil
	}
	return nil, err
}

// refusal reports the kinds of invocation error that are about the call,
// not the target: neither failures for a breaker nor worth a retry.
func refusal(k wire.Kind) bool {
	switch k {
	case wire.KindBadRequest, wire.KindHeadersTooLarge, wire.KindBodyTooLarge, wire.KindPermissionDenied, wire.KindMTLS:
		return true
	}
	return false
}

// cancelBody ends a try's context when its answer is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// StateMiddleware applies each component's policy to its state store's
// calls: a timeout per try, retries of the calls that can be repeated
// without changing their meaning (see repeatable), and a circuit breaker.
// ETag conflicts and bad requests are answers, not failures. Give it to
// state.Service.Use outside tracing and metrics, so that each try is its
// own span and sample. Each middleware has its own breakers. Without
// component policies it is nil.
func (s *Set) StateMiddleware() state.Middleware {
	if s == nil || len(s.Components) == 0 {
		return nil
	}
	runners := make(map[string]*runner, len(s.Components))
	for name, p := range s.Components {
		runners[name] = newRunner(p)
	}
	return stateMiddleware(runners)
}

// stateMiddleware applies the runners of the components named.
func stateMiddleware(runners map[string]*runner) state.Middleware {
	return func(ctx context.Context, c *state.Call, next func(context.Context) error) error {
		r := runners[c.Store.Name]
		if r == nil {
			return next(ctx)
		}
		return r.do(ctx, func(ctx context.Context) (bool, bool, error) {
			if r.p.Timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, r.p.Timeout)
				defer cancel()
			}
			err := next(ctx)
			failed := err != nil && !errors.Is(err, state.ErrETagMismatch) && !errors.Is(err, state.ErrETagInvalid) && !errors.Is(err, state.ErrBadRequest)
			return failed, repeatable(c), err
		})
	}
}

// repeatable reports whether a store call means the same when tried again:
// gets, deletes without an ETag and last-write saves without one. A
// transaction is never repeated: one that timed out may have applied.
func repeatable(c *state.Call) bool {
	switch c.Kind {
	case state.KindGet:
		return true
	case state.KindSet:
		return c.Set.ETag == nil && !c.Set.FirstWrite
	case state.KindDelete:
		return c.Delete.ETag == nil
	}
	return false
}

// PubsubMiddleware applies each component's outbound policy to its
// broker's publishes: a timeout per try, retries and a circuit breaker. A
// publish is retried whatever failed: the event is the same CloudEvent
// (same id) each try, and delivery is at least once already, so a try
// that timed out after the broker took the event costs a duplicate, never
// a loss. A topic the component's access refuses is an answer, not a
// failure. Give it to pubsub.Service.Use outside tracing, so that each try
// is its own span, and inside metrics, so that they count each publish
// once, with its last outcome. Without component policies it is nil.
func (s *Set) PubsubMiddleware() pubsub.Middleware {
	if s == nil || len(s.Components) == 0 {
		return nil
	}
	runners := make(map[string]*runner, len(s.Components))
	for name, p := range s.Components {
		runners[name] = newRunner(p)
	}
	return pubsubMiddleware(runners)
}

// pubsubMiddleware applies the runners of the components named.
func pubsubMiddleware(runners map[string]*runner) pubsub.Middleware {
	return func(ctx context.Context, c *pubsub.Call, next func(context.Context) error) error {
		r := runners[c.Broker.Name]
		if r == nil {
			return next(ctx)
		}
		return r.do(ctx, func(ctx context.Context) (bool, bool, error) {
			tctx := ctx
			if r.p.Timeout > 0 {
				var cancel context.CancelFunc
				tctx, cancel = context.WithTimeout(ctx, r.p.Timeout)
				defer cancel()
			}
			err := next(tctx)
			if err != nil && tctx.Err() != nil && ctx.Err() == nil {
				err = fmt.Errorf("no answer within the timeout of %s (resiliency %s): %w: %w", r.p.Timeout, r.p.Name, context.DeadlineExceeded, err)
			}
			refused := errors.Is(err, pubsub.ErrForbidden) || errors.Is(err, pubsub.ErrBadTopic) || errors.Is(err, pubsub.ErrBadMetadata)
			return err != nil && !refused, !refused, err
		})
	}
}
