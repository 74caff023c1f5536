// Package state is the state API's behaviour, written once for the HTTP and
// gRPC adapters: the Store contract that stores implement, key validation
// and prefixing, bulk reads and transactions over named stores, and the
// middleware (tracing, metrics, resiliency) around every store call.
package state

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors stores and the Service return, wrapped with context.
var (
	// ErrETagMismatch: the ETag given does not match the stored one, or
	// first-write found the key already there.
	ErrETagMismatch = errors.New("etag mismatch")
	// ErrETagInvalid: the ETag given is not one this store issues.
	ErrETagInvalid = errors.New("invalid etag")
	// ErrStoreNotFound: no state store has that name.
	ErrStoreNotFound = errors.New("state store not found")
	// ErrBadRequest: the request itself is malformed (key, option, metadata).
	ErrBadRequest = errors.New("bad state request")
	// ErrIllegalKey: a key contains "||", which separates the key prefix
	// (it is also ErrBadRequest).
	ErrIllegalKey = fmt.Errorf("illegal key: %w", ErrBadRequest)
	// ErrTooLarge: the request asks for more than a bound allows (keys of a
	// bulk read, operations of a transaction); the message names the bound.
	ErrTooLarge = errors.New("state request over a limit")
	// ErrTooManyOperations: a transaction has more operations than its
	// store allows (it is also ErrTooLarge).
	ErrTooManyOperations = fmt.Errorf("too many operations in a transaction: %w", ErrTooLarge)
	// ErrUnsupportedOperation: a transaction operation is neither an upsert
	// nor a delete.
	ErrUnsupportedOperation = errors.New("unsupported state operation")
	// ErrNotAtomic: the store cannot apply these operations as one
	// transaction (in a Redis Cluster: keys of different hash slots);
	// nothing was applied.
	ErrNotAtomic = errors.New("operations the store cannot apply as one transaction")
)

// Transaction operation types, as Dapr names them.
const (
	OpUpsert = "upsert"
	OpDelete = "delete"
)

// UnsupportedOperation is the error of a transaction operation type other
// than OpUpsert and OpDelete.
func UnsupportedOperation(op string) error {
	return fmt.Errorf("operation type %q is not supported; accepted: %s, %s: %w", op, OpUpsert, OpDelete, ErrUnsupportedOperation)
}

// Concurrency and consistency options, as Dapr names them.
const (
	FirstWrite = "first-write"
	LastWrite  = "last-write"
	Strong     = "strong"
	Eventual   = "eventual"
)

// Item is a stored value and its ETag.
type Item struct {
	Value []byte
	ETag  string
}

// SetRequest saves one value.
type SetRequest struct {
	Key   string
	Value []byte
	// ETag, when not nil, must match the stored ETag.
	ETag *string
	// FirstWrite without an ETag succeeds only if the key does not exist.
	FirstWrite bool
	// TTL is the time to live. Stores see 0 (never expires) or a positive
	// TTL; through the Service, 0 means "the store's default" and a
	// negative TTL means "never expires".
	TTL    time.Duration
	Strong bool
}

// DeleteRequest deletes one value.
type DeleteRequest struct {
	Key    string
	ETag   *string
	Strong bool
}

// Op is one operation of a transaction: exactly one of Set and Delete.
type Op struct {
	Set    *SetRequest
	Delete *DeleteRequest
}

// Store is a state store. Keys reach it already prefixed. Get of a missing
// key returns (nil, nil).
type Store interface {
	Get(ctx context.Context, key string) (*Item, error)
	Set(ctx context.Context, req SetRequest) error
	Delete(ctx context.Context, req DeleteRequest) error
}

// Transactional stores apply a list of operations atomically: all ETags are
// checked before anything is written, and either all apply or none.
type Transactional interface {
	Transact(ctx context.Context, ops []Op) error
}
