package components

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/memory"
	"github.com/tandem-run/tandem/pkg/state/postgresql"
	"github.com/tandem-run/tandem/pkg/state/redis"
)

// DefaultStore is the name of the embedded store a standalone sidecar has
// when no components are configured.
const DefaultStore = "statestore"

// Build builds the state store of c, its secretKeyRefs read through
// secrets (nil: a secretKeyRef is an error). Nothing is connected: a
// store connects on its first call (state.Pinger checks it can). The
// caller closes the store it no longer uses (io.Closer).
func Build(c Component, secrets Secrets) (state.StoreConfig, error) {
	md, err := c.ResolveMetadata(secrets)
	if err != nil {
		return state.StoreConfig{}, err
	}
	prefix := md["keyPrefix"]
	maxOps, err := maxTransactionOperations(md)
	if err != nil {
		return state.StoreConfig{}, c.errorf("%v", err)
	}
	var st state.Store
	var ttl time.Duration
	switch c.Spec.Type {
	case "state.in-memory":
		for k := range md {
			if k != "keyPrefix" && k != MetadataMaxTransactionOperations {
				return state.StoreConfig{}, c.errorf("metadata %q is not a state.in-memory field; accepted: keyPrefix, %s", k, MetadataMaxTransactionOperations)
			}
		}
		st = memory.New(0)
	case "state.redis":
		cfg, err := redis.ParseMetadata(md)
		if err != nil {
			return state.StoreConfig{}, c.errorf("%v", err)
		}
		st, ttl = redis.Open(c.Metadata.Name, cfg), cfg.TTL
	case "state.postgresql":
		if err := c.checkVersion(); err != nil {
			return state.StoreConfig{}, err
		}
		cfg, err := postgresql.ParseMetadata(md)
		if err != nil {
			return state.StoreConfig{}, c.errorf("%v", err)
		}
		if st, err = postgresql.New(c.Metadata.Name, cfg); err != nil {
			return state.StoreConfig{}, c.errorf("%v", err)
		}
	default:
		return state.StoreConfig{}, c.errorf("spec.type %q is not a state store type; accepted: %s", c.Spec.Type, strings.Join(StateTypes, ", "))
	}
	return state.StoreConfig{Name: c.Metadata.Name, Type: c.Spec.Type, Store: st, KeyPrefix: prefix, DefaultTTL: ttl, MaxTransactionOperations: maxOps}, nil
}

// MetadataMaxTransactionOperations is the metadata field of every state
// store Component that bounds the operations of one transaction.
const MetadataMaxTransactionOperations = "maxTransactionOperations"

// maxTransactionOperations reads the field: 0 when absent (the default).
func maxTransactionOperations(md map[string]string) (int, error) {
	v, ok := md[MetadataMaxTransactionOperations]
	if !ok {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > state.HighestMaxTransactionOperations {
		return 0, fmt.Errorf("metadata %s %q: want a whole number from 1 to %d (default %d)",
			MetadataMaxTransactionOperations, v, state.HighestMaxTransactionOperations, state.DefaultMaxTransactionOperations)
	}
	return n, nil
}
