package components

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/memory"
	"github.com/tandem-run/tandem/pkg/state/redis"
)

// DefaultStore is the name of the embedded store a standalone sidecar has
// when no components are configured.
const DefaultStore = "statestore"

// StateService builds the state stores of comps. A component that fails
// to build stops it, unless the component sets spec.ignoreErrors: then it
// is left out and the error logged, as Dapr does. With no state components
// and withDefault set, it adds the embedded in-memory store "statestore"
// and logs that it did.
func StateService(comps []Component, appID, namespace string, withDefault bool, log *slog.Logger) (*state.Service, error) {
	svc := state.NewService(appID, namespace)
	for _, c := range comps {
		err := addStore(svc, c)
		if err != nil && c.Spec.IgnoreErrors {
			log.Error("state store not loaded; going on without it, as its spec.ignoreErrors asks", "store", c.Metadata.Name, "file", c.File, "err", err)
			continue
		}
		if err != nil {
			_ = svc.Close()
			return nil, err
		}
		log.Info("state store ready", "store", c.Metadata.Name, "type", c.Spec.Type, "file", c.File)
	}
	if len(comps) == 0 && withDefault {
		if err := svc.Add(state.StoreConfig{Name: DefaultStore, Type: "state.in-memory", Store: memory.New(0)}); err != nil {
			return nil, err
		}
		log.Info("no state store components: using the embedded in-memory store; its data lives only as long as this sidecar",
			"store", DefaultStore)
	}
	return svc, nil
}

// addStore builds the store of c and adds it to svc.
func addStore(svc *state.Service, c Component) error {
	sc, err := Build(c, nil)
	if err != nil {
		return err
	}
	if err := svc.Add(sc); err != nil {
		if cl, ok := sc.Store.(io.Closer); ok {
			_ = cl.Close()
		}
		return fmt.Errorf("%s: %w", c.File, err)
	}
	return nil
}

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
		st, ttl = redis.New(c.Metadata.Name, goredis.NewClient(cfg.Options)), cfg.TTL
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
