// Package redis is the state store on Redis (github.com/redis/go-redis/v9).
//
// Each key is a hash holding "data" and "version"; the version is the ETag.
// Check-and-set runs as one Lua script on the server (loaded once, run by
// SHA), so ETag checks and first-write are atomic; transactions use
// WATCH/MULTI/EXEC and are retried when a watched key changes under them.
package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/pkg/state"
)

// setScript checks the ETag (ARGV[1], "" for none) or first-write
// (ARGV[2] == "1"), then writes the value (ARGV[3]) with a new version and
// applies the TTL in seconds (ARGV[4]; 0 means none: PERSIST).
var setScript = redis.NewScript(`
local ver = redis.call("HGET", KEYS[1], "version")
if ARGV[1] ~= "" then
  if not ver or ver ~= ARGV[1] then return redis.error_reply("ETAG_MISMATCH") end
elseif ARGV[2] == "1" and ver then
  return redis.error_reply("ETAG_MISMATCH")
end
redis.call("HSET", KEYS[1], "data", ARGV[3])
local v = redis.call("HINCRBY", KEYS[1], "version", 1)
local ttl = tonumber(ARGV[4])
if ttl > 0 then redis.call("EXPIRE", KEYS[1], ttl) else redis.call("PERSIST", KEYS[1]) end
return v
`)

// deleteScript deletes KEYS[1] when ARGV[1] is "" or its version.
var deleteScript = redis.NewScript(`
if ARGV[1] ~= "" then
  local ver = redis.call("HGET", KEYS[1], "version")
  if not ver or ver ~= ARGV[1] then return redis.error_reply("ETAG_MISMATCH") end
end
return redis.call("DEL", KEYS[1])
`)

// Store is a Redis state store.
type Store struct {
	name   string // component name, for messages
	client *redis.Client
	addr   string
	strong struct {
		mu       sync.Mutex
		replicas int
		checked  time.Time
	}
	timeout time.Duration
}

// New returns a store on client. name is the component's name and is used
// in error messages along with the server address.
func New(name string, client *redis.Client) *Store {
	o := client.Options()
	return &Store{name: name, client: client, addr: o.Addr, timeout: o.ReadTimeout + o.WriteTimeout + o.DialTimeout}
}

// Close closes the client.
// Addr is the address of the Redis server, for telemetry.
func (s *Store) Addr() string { return s.addr }

func (s *Store) Close() error { return s.client.Close() }

func (s *Store) wrap(op, key string, err error) error {
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), "ETAG_MISMATCH") {
		return fmt.Errorf("key %q: etag does not match: %w", key, state.ErrETagMismatch)
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return fmt.Errorf("redis at %s: %s %q timed out (%v)", s.addr, op, key, err)
	}
	return fmt.Errorf("redis at %s: %s %q: %w", s.addr, op, key, err)
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// Get returns the value of key, or nil when missing.
func (s *Store) Get(ctx context.Context, key string) (*state.Item, error) {
	vals, err := s.client.HMGet(ctx, key, "data", "version").Result()
	if err != nil {
		return nil, s.wrap("get", key, err)
	}
	data, ok1 := vals[0].(string)
	ver, ok2 := vals[1].(string)
	if !ok1 || !ok2 {
		return nil, nil
	}
	return &state.Item{Value: []byte(data), ETag: ver}, nil
}

// Set saves a value.
func (s *Store) Set(ctx context.Context, req state.SetRequest) error {
	etag, err := checkETag(req.ETag)
	if err != nil {
		return err
	}
	fw := "0"
	if req.FirstWrite {
		fw = "1"
	}
	err = setScript.Run(ctx, s.client, []string{req.Key}, etag, fw, req.Value, ttlSeconds(req.TTL)).Err()
	if err != nil {
		if strings.Contains(err.Error(), "ETAG_MISMATCH") && req.ETag == nil {
			return fmt.Errorf("key %q exists and first-write needs an etag to update it: %w", req.Key, state.ErrETagMismatch)
		}
		return s.wrap("set", req.Key, err)
	}
	return s.wait(ctx, req.Strong)
}

// Delete deletes a value.
func (s *Store) Delete(ctx context.Context, req state.DeleteRequest) error {
	etag, err := checkETag(req.ETag)
	if err != nil {
		return err
	}
	if err := deleteScript.Run(ctx, s.client, []string{req.Key}, etag).Err(); err != nil {
		return s.wrap("delete", req.Key, err)
	}
	return s.wait(ctx, req.Strong)
}

// Transact checks every ETag under WATCH and applies all operations in one
// MULTI/EXEC; when a watched key changes first, it starts again.
func (s *Store) Transact(ctx context.Context, ops []state.Op) error {
	keys := make([]string, 0, len(ops))
	strong := false
	for _, op := range ops {
		if op.Set != nil {
			keys = append(keys, op.Set.Key)
			strong = strong || op.Set.Strong
			if _, err := checkETag(op.Set.ETag); err != nil {
				return err
			}
		} else {
			keys = append(keys, op.Delete.Key)
			strong = strong || op.Delete.Strong
			if _, err := checkETag(op.Delete.ETag); err != nil {
				return err
			}
		}
	}
	txf := func(tx *redis.Tx) error {
		// Read every version in one round trip, under the WATCH.
		cmds := make([]*redis.StringCmd, len(keys))
		_, err := tx.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range keys {
				cmds[i] = p.HGet(ctx, k, "version")
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		versions := make(map[string]string, len(keys))
		for i, k := range keys {
			v, err := cmds[i].Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			versions[k] = v
		}
		for i, op := range ops {
			var key string
			var etag *string
			if op.Set != nil {
				key, etag = op.Set.Key, op.Set.ETag
				if etag == nil && op.Set.FirstWrite && versions[key] != "" {
					return fmt.Errorf("operation %d: key %q exists and first-write needs an etag: %w", i, key, state.ErrETagMismatch)
				}
			} else {
				key, etag = op.Delete.Key, op.Delete.ETag
			}
			if etag != nil && versions[key] != *etag {
				return fmt.Errorf("operation %d: key %q: etag does not match: %w", i, key, state.ErrETagMismatch)
			}
			// Later operations see the effect of earlier ones.
			if op.Set != nil {
				versions[key] = "pending"
			} else {
				versions[key] = ""
			}
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, op := range ops {
				if op.Delete != nil {
					p.Del(ctx, op.Delete.Key)
					continue
				}
				p.HSet(ctx, op.Set.Key, "data", op.Set.Value)
				p.HIncrBy(ctx, op.Set.Key, "version", 1)
				if op.Set.TTL > 0 {
					p.Expire(ctx, op.Set.Key, op.Set.TTL)
				} else {
					p.Persist(ctx, op.Set.Key)
				}
			}
			return nil
		})
		return err
	}
	for attempt := 0; ; attempt++ {
		err := s.client.Watch(ctx, txf, keys...)
		if errors.Is(err, redis.TxFailedErr) && attempt < 10 {
			continue
		}
		if errors.Is(err, state.ErrETagMismatch) {
			return err
		}
		if err != nil {
			return s.wrap("transaction on", strings.Join(keys, ","), err)
		}
		return s.wait(ctx, strong)
	}
}

// wait makes a strong write wait until the replicas have it.
func (s *Store) wait(ctx context.Context, strong bool) error {
	if !strong {
		return nil
	}
	n := s.replicas(ctx)
	if n == 0 {
		return nil
	}
	got, err := s.client.Wait(ctx, n, s.timeout).Result()
	if err != nil {
		return fmt.Errorf("redis at %s: waiting for %d replicas: %w", s.addr, n, err)
	}
	if got < int64(n) {
		return fmt.Errorf("redis at %s: strong consistency: only %d of %d replicas acknowledged the write", s.addr, got, n)
	}
	return nil
}

// replicas returns the number of connected replicas, looked up at most
// every 10 seconds.
func (s *Store) replicas(ctx context.Context) int {
	s.strong.mu.Lock()
	defer s.strong.mu.Unlock()
	if time.Since(s.strong.checked) < 10*time.Second {
		return s.strong.replicas
	}
	info, err := s.client.Info(ctx, "replication").Result()
	if err != nil {
		return s.strong.replicas
	}
	s.strong.checked = time.Now()
	s.strong.replicas = 0
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
			s.strong.replicas, _ = strconv.Atoi(v)
		}
	}
	return s.strong.replicas
}

func checkETag(etag *string) (string, error) {
	if etag == nil {
		return "", nil
	}
	if _, err := strconv.ParseUint(*etag, 10, 64); err != nil {
		return "", fmt.Errorf("etag %q is not one this store issued (a decimal version): %w", *etag, state.ErrETagInvalid)
	}
	return *etag, nil
}

func ttlSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return max(1, int64((d+time.Second-1)/time.Second))
}

var (
	_ state.Store         = (*Store)(nil)
	_ state.Transactional = (*Store)(nil)
)
