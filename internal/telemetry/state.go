package telemetry

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tandem-run/tandem/pkg/state"
)

// Store wraps a state store so that each operation is a client span with
// OpenTelemetry's db.* attributes (and Dapr's older db.name and
// db.statement): "<OPERATION> <store>", for example "GET statestore".
// Pass it to state.Service.WrapStores. With tracing off it returns the
// store as it is.
func (t *Tracing) Store(c state.StoreConfig) state.Store {
	if !t.Enabled() {
		return c.Store
	}
	system := strings.TrimPrefix(c.Type, "state.")
	attrs := []attribute.KeyValue{
		attribute.String("db.system.name", system),
		attribute.String("db.system", system),
		attribute.String("db.namespace", c.Name),
		attribute.String("db.name", c.Name),
	}
	if a, ok := c.Store.(interface{ Addr() string }); ok {
		if host, port, err := net.SplitHostPort(a.Addr()); err == nil {
			attrs = append(attrs, attribute.String(attrServerAddr, host))
			if p, err := strconv.Atoi(port); err == nil {
				attrs = append(attrs, attribute.Int(attrServerPort, p))
			}
		}
	}
	ts := &tracedStore{t: t, name: c.Name, inner: c.Store, attrs: attrs}
	if tx, ok := c.Store.(state.Transactional); ok {
		return &tracedTxStore{tracedStore: ts, tx: tx}
	}
	return ts
}

type tracedStore struct {
	t     *Tracing
	name  string
	inner state.Store
	attrs []attribute.KeyValue
}

func (s *tracedStore) start(ctx context.Context, op string) (context.Context, trace.Span) {
	return s.t.tracer.Start(ctx, op+" "+s.name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(s.attrs...),
		trace.WithAttributes(attribute.String("db.operation.name", op), attribute.String("db.statement", op)))
}

func end(span trace.Span, err error) {
	// A failed ETag check is the caller's conflict, not a store failure.
	if err != nil && !errors.Is(err, state.ErrETagMismatch) && !errors.Is(err, state.ErrETagInvalid) {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	} else if err != nil {
		span.SetAttributes(attribute.String("db.response.status_code", "etag_mismatch"))
	}
	span.End()
}

func (s *tracedStore) Get(ctx context.Context, key string) (*state.Item, error) {
	ctx, span := s.start(ctx, "GET")
	it, err := s.inner.Get(ctx, key)
	end(span, err)
	return it, err
}

func (s *tracedStore) Set(ctx context.Context, req state.SetRequest) error {
	ctx, span := s.start(ctx, "SET")
	err := s.inner.Set(ctx, req)
	end(span, err)
	return err
}

func (s *tracedStore) Delete(ctx context.Context, req state.DeleteRequest) error {
	ctx, span := s.start(ctx, "DELETE")
	err := s.inner.Delete(ctx, req)
	end(span, err)
	return err
}

type tracedTxStore struct {
	*tracedStore
	tx state.Transactional
}

func (s *tracedTxStore) Transact(ctx context.Context, ops []state.Op) error {
	ctx, span := s.start(ctx, "TRANSACTION")
	span.SetAttributes(attribute.Int("db.operation.batch.size", len(ops)))
	err := s.tx.Transact(ctx, ops)
	end(span, err)
	return err
}
