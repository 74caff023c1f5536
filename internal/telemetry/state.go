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

// StateMiddleware makes each state store call a client span with
// OpenTelemetry's db.* attributes (and Dapr's older db.name and
// db.statement): "<OPERATION> <store>", for example "GET statestore". Give
// it to state.Service.Use. With tracing off (and not reloadable) it is nil.
func (t *Tracing) StateMiddleware() state.Middleware {
	if !t.wraps() {
		return nil
	}
	return func(ctx context.Context, c *state.Call, next func(context.Context) error) error {
		p := t.provider()
		if p == nil {
			return next(ctx)
		}
		op := strings.ToUpper(string(c.Kind))
		ctx, span := p.tracer.Start(ctx, op+" "+c.Store.Name, clientKind,
			trace.WithAttributes(storeAttrs(c.Store)...),
			trace.WithAttributes(attribute.String("db.operation.name", op), attribute.String("db.statement", op)))
		if c.Kind == state.KindTransaction {
			span.SetAttributes(attribute.Int("db.operation.batch.size", len(c.Ops)))
		}
		err := next(ctx)
		end(span, err)
		return err
	}
}

// storeAttrs are the attributes of every span of a store.
func storeAttrs(c state.StoreConfig) []attribute.KeyValue {
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
	return attrs
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
