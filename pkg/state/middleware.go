package state

import "context"

// Kind names a store operation. Metrics label calls with it; spans name
// them with it upper-cased ("GET statestore").
type Kind string

// The kinds of store call.
const (
	KindGet         Kind = "get"
	KindSet         Kind = "set"
	KindDelete      Kind = "delete"
	KindTransaction Kind = "transaction"
)

// Call is one call of a store as Middleware sees it: the store, the kind of
// operation, and the request exactly as the store receives it (keys
// prefixed, TTLs resolved). By Kind, exactly one of Key, Set, Delete and
// Ops is set. Middleware reads a Call and must not change it.
type Call struct {
	Store  StoreConfig    // the store called, as added
	Kind   Kind           // which operation
	Key    string         // KindGet: the key, as stored
	Set    *SetRequest    // KindSet
	Delete *DeleteRequest // KindDelete
	Ops    []Op           // KindTransaction
}

// Middleware runs around every store call of a Service: Get, each item of
// Save, Delete, each key of BulkGet and Transact. It may act before and
// after next, which runs the rest of the chain and then the store and
// returns the store's error as it is (not yet wrapped with the store's
// name). It may call next again for a new try, one call at a time, or not
// at all, answering with an error of its own.
type Middleware func(ctx context.Context, c *Call, next func(context.Context) error) error

// Use adds middleware around every store call; the first given is the
// outermost, and nil ones are skipped. Call it before serving.
func (s *Service) Use(mw ...Middleware) {
	for _, m := range mw {
		if m != nil {
			s.mw = append(s.mw, m)
		}
	}
}

// call runs do, the store call c, inside the middleware.
func (s *Service) call(ctx context.Context, c *Call, do func(context.Context) error) error {
	return s.through(ctx, 0, c, do)
}

func (s *Service) through(ctx context.Context, i int, c *Call, do func(context.Context) error) error {
	if i == len(s.mw) {
		return do(ctx)
	}
	return s.mw[i](ctx, c, func(ctx context.Context) error { return s.through(ctx, i+1, c, do) })
}
