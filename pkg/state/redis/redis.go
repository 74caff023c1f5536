// Package redis is the state store on Redis (github.com/redis/go-redis/v9).
//
// Each key is a hash holding "data" and "version"; the version is the ETag.
// Check-and-set runs as one Lua script on the server (loaded once, run by
// SHA), so ETag checks and first-write are atomic. A transaction is one
// script run too: it checks every operation, then applies them all, and
// Redis runs nobody else's command in between. Its cost grows linearly
// with its operations; the state Service bounds how many there are.
//
// The client is one server, a Sentinel-managed master or a Redis Cluster
// (github.com/tandem-run/tandem/internal/redisconn makes it from the
// component's metadata). In a cluster every command and script touches
// keys of one hash slot: a transaction whose keys span slots is refused
// before anything runs (state.ErrNotAtomic), naming its keys and slots.
package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/redisconn"
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
	client redis.UniversalClient
	addr   string
	// cluster: keys of one script or transaction must share a hash slot.
	cluster bool
	strong  struct {
		mu     sync.Mutex
		byNode map[string]replicaCount // by the node's address
	}
	timeout time.Duration
}

// New returns a store on client. name is the component's name and is used
// in error messages along with the server address.
func New(name string, client redis.UniversalClient) *Store {
	return build(name, client, redisconn.Addr(client))
}

// Open returns a store on the connection cfg describes, with its own
// client.
func Open(name string, cfg Config) *Store {
	return build(name, cfg.Conn.NewClient(), cfg.Conn.Addr())
}

func build(name string, client redis.UniversalClient, addr string) *Store {
	s := &Store{name: name, client: client, addr: addr}
	switch c := client.(type) {
	case *redis.Client:
		o := c.Options()
		s.timeout = o.ReadTimeout + o.WriteTimeout + o.DialTimeout
	case *redis.ClusterClient:
		o := c.Options()
		s.timeout = o.ReadTimeout + o.WriteTimeout + o.DialTimeout
		s.cluster = true
	default:
		s.timeout = 5 * time.Second
	}
	return s
}

// Addr is the address of the Redis server, for telemetry.
func (s *Store) Addr() string { return s.addr }

// Close closes the client.
func (s *Store) Close() error { return s.client.Close() }

// Ping checks that the server answers, with this store's password and
// database (state.Pinger).
func (s *Store) Ping(ctx context.Context) error {
	return s.wrap("ping", s.client.Ping(ctx).Err())
}

// wrap says which server and operation failed. It does not name the key:
// keys reach the store prefixed, and the caller names the key as its user
// knows it.
func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), "ETAG_MISMATCH") {
		return fmt.Errorf("etag does not match: %w", state.ErrETagMismatch)
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return fmt.Errorf("redis at %s: %s timed out (%v)", s.addr, op, err)
	}
	return fmt.Errorf("redis at %s: %s: %w", s.addr, op, err)
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// Get returns the value of key, or nil when missing.
func (s *Store) Get(ctx context.Context, key string) (*state.Item, error) {
	vals, err := s.client.HMGet(ctx, key, "data", "version").Result()
	if err != nil {
		return nil, s.wrap("get", err)
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
	err = s.run(ctx, req.Strong, setScript, []string{req.Key}, etag, fw, req.Value, ttlSeconds(req.TTL))
	if err != nil {
		if strings.Contains(err.Error(), "ETAG_MISMATCH") && req.ETag == nil {
			return fmt.Errorf("the key exists and first-write needs an etag to update it: %w", state.ErrETagMismatch)
		}
		return s.wrap("set", err)
	}
	return nil
}

// Delete deletes a value.
func (s *Store) Delete(ctx context.Context, req state.DeleteRequest) error {
	etag, err := checkETag(req.ETag)
	if err != nil {
		return err
	}
	return s.wrap("delete", s.run(ctx, req.Strong, deleteScript, []string{req.Key}, etag))
}

// txScript applies a transaction as one script run, which Redis runs
// atomically: first it checks every operation's ETag or first-write, as
// the operations before it in the transaction left the key, and only when
// all pass does it apply them all, in order. KEYS[i] is operation i's key;
// ARGV holds five values per operation: "set" or "del", the ETag ("" for
// none), first-write ("1" or "0"), the TTL in seconds (0: none, PERSIST) and
// the value. Reading every key's version first also means a key of another
// type fails the script before anything is written.
var txScript = redis.NewScript(`
local ver = {}
for i = 1, #KEYS do
  local k, a = KEYS[i], (i - 1) * 5
  local v = ver[k]
  if v == nil then v = redis.call("HGET", k, "version") or "" end
  if ARGV[a + 2] ~= "" then
    if v ~= ARGV[a + 2] then return redis.error_reply("ETAG_MISMATCH " .. i) end
  elseif ARGV[a + 3] == "1" and v ~= "" then
    return redis.error_reply("ETAG_MISMATCH " .. i)
  end
  if ARGV[a + 1] == "set" then ver[k] = "written" else ver[k] = "" end
end
for i = 1, #KEYS do
  local k, a = KEYS[i], (i - 1) * 5
  if ARGV[a + 1] == "del" then
    redis.call("DEL", k)
  else
    redis.call("HSET", k, "data", ARGV[a + 5])
    redis.call("HINCRBY", k, "version", 1)
    local ttl = tonumber(ARGV[a + 4])
    if ttl > 0 then redis.call("EXPIRE", k, ttl) else redis.call("PERSIST", k) end
  end
end
return #KEYS
`)

// Transact checks every ETag and first-write and applies all operations
// in one script run (txScript), so that no other client sees or changes a
// key in between and Redis is held once, for as long as the operations
// take. A key written earlier in the same transaction matches no ETag.
func (s *Store) Transact(ctx context.Context, ops []state.Op) error {
	if len(ops) == 0 {
		return nil
	}
	if err := s.oneSlot(ops); err != nil {
		return err
	}
	keys := make([]string, len(ops))
	args := make([]any, 0, 5*len(ops))
	strong := false
	for i, op := range ops {
		if op.Set != nil {
			etag, err := checkETag(op.Set.ETag)
			if err != nil {
				return fmt.Errorf("operation %d: %w", i, err)
			}
			fw := "0"
			if op.Set.FirstWrite {
				fw = "1"
			}
			keys[i] = op.Set.Key
			args = append(args, "set", etag, fw, ttlSeconds(op.Set.TTL), op.Set.Value)
			strong = strong || op.Set.Strong
			continue
		}
		etag, err := checkETag(op.Delete.ETag)
		if err != nil {
			return fmt.Errorf("operation %d: %w", i, err)
		}
		keys[i] = op.Delete.Key
		args = append(args, "del", etag, "0", 0, "")
		strong = strong || op.Delete.Strong
	}
	err := s.run(ctx, strong, txScript, keys, args...)
	if i, ok := mismatchAt(err); ok && i < len(ops) {
		if op := ops[i]; op.Set != nil && op.Set.ETag == nil {
			return fmt.Errorf("operation %d: key %q exists and first-write needs an etag to update it: %w", i, keys[i], state.ErrETagMismatch)
		}
		return fmt.Errorf("operation %d: key %q: etag does not match: %w", i, keys[i], state.ErrETagMismatch)
	}
	if err != nil {
		return s.wrap(fmt.Sprintf("transaction of %d operations", len(ops)), err)
	}
	return nil
}

// oneSlot refuses, in a cluster, a transaction whose keys are in more
// than one hash slot: no node can run it as one script (Redis would answer
// CROSSSLOT). The error names the keys of each slot.
func (s *Store) oneSlot(ops []state.Op) error {
	if !s.cluster {
		return nil
	}
	var order []int
	bySlot := map[int][]string{}
	for _, op := range ops {
		k := opKey(op)
		slot := redisconn.Slot(k)
		if _, ok := bySlot[slot]; !ok {
			order = append(order, slot)
		}
		if !slices.Contains(bySlot[slot], k) {
			bySlot[slot] = append(bySlot[slot], k)
		}
	}
	if len(order) == 1 {
		return nil
	}
	var b strings.Builder
	named := 0
	for i, slot := range order {
		if i > 0 {
			b.WriteString("; ")
		}
		keys := bySlot[slot]
		for j, k := range keys {
			if named == maxNamed {
				b.WriteString("...")
				break
			}
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", k)
			named++
		}
		fmt.Fprintf(&b, " (slot %d)", slot)
		if named == maxNamed {
			break
		}
	}
	return fmt.Errorf("the transaction's keys are in %d hash slots of the Redis Cluster, and one transaction runs on one slot: %s; "+
		"give keys that go together a common hash tag, such as {order-1}items and {order-1}total: %w", len(order), b.String(), state.ErrNotAtomic)
}

func opKey(op state.Op) string {
	if op.Set != nil {
		return op.Set.Key
	}
	return op.Delete.Key
}

// maxNamed bounds the keys a cross-slot refusal names.
const maxNamed = 20

// mismatchAt reads txScript's "ETAG_MISMATCH <n>" (n counting from 1) as
// the index of the operation that failed.
func mismatchAt(err error) (int, bool) {
	if err == nil {
		return 0, false
	}
	rest, ok := strings.CutPrefix(err.Error(), "ETAG_MISMATCH ")
	if !ok {
		return 0, false
	}
	n, convErr := strconv.Atoi(rest)
	if convErr != nil || n < 1 {
		return 0, false
	}
	return n - 1, true
}

// run runs script on keys. A strong write then waits until the replicas
// of the keys' master have it: on the same connection, as WAIT waits for
// the writes of its own connection. The replicas are those the server
// that took the write has connected when it takes it (ROLE, in the same
// round trip), so that after a failover a write waits for the new
// master's replicas, not for a count of the old one's. In a cluster that
// connection is the master's own, so the store follows a slot that moves
// under the write itself: to the node a MOVED or ASK names (ASKING first
// for ASK), at most three times.
func (s *Store) run(ctx context.Context, strong bool, script *redis.Script, keys []string, args ...any) error {
	if !strong {
		return script.Run(ctx, s.client, keys, args...).Err()
	}
	node, err := s.nodeOf(ctx, keys[0])
	if err != nil {
		return err
	}
	asking := false
	for redirects := 0; ; redirects++ {
		err := s.writeAndWait(ctx, node, asking, script, keys, args...)
		addr, ask, ok := redisconn.Redirected(err)
		cc, cluster := s.client.(*redis.ClusterClient)
		if !ok || !cluster || redirects == 3 {
			return err
		}
		if node, err = redisconn.Master(ctx, cc, addr); err != nil {
			return err
		}
		asking = ask
	}
}

// writeAndWait runs script on a connection of node and waits there until
// node's replicas have the write. asking: the slot is moving to node,
// which takes the command after ASKING only.
func (s *Store) writeAndWait(ctx context.Context, node *redis.Client, asking bool, script *redis.Script, keys []string, args ...any) error {
	conn := node.Conn()
	defer conn.Close()
	var res, role *redis.Cmd
	if asking {
		// ASKING lets the next command through: EVAL, not an EVALSHA
		// that NOSCRIPT would follow with EVAL.
		if err := conn.Do(ctx, "ASKING").Err(); err != nil {
			return err
		}
		res, role = runWithRole(ctx, conn, script.Eval, keys, args)
	} else {
		res, role = runWithRole(ctx, conn, script.EvalSha, keys, args)
		if err := res.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			res, role = runWithRole(ctx, conn, script.Eval, keys, args)
		}
	}
	if err := res.Err(); err != nil {
		return err
	}
	n, ok := connectedReplicas(role)
	if !ok {
		n = s.replicas(ctx, node) // ROLE refused (an ACL): INFO's count
	}
	if n == 0 {
		return nil
	}
	got, err := conn.Wait(ctx, n, s.timeout).Result()
	if err != nil {
		return fmt.Errorf("waiting for %d replicas: %w", n, err)
	}
	if got < int64(n) {
		return fmt.Errorf("strong consistency: only %d of %d replicas acknowledged the write", got, n)
	}
	return nil
}

// runWithRole sends the script (by eval: EVALSHA or EVAL) and ROLE on
// conn in one round trip.
func runWithRole(ctx context.Context, conn *redis.Conn, eval func(context.Context, redis.Scripter, []string, ...any) *redis.Cmd, keys []string, args []any) (res, role *redis.Cmd) {
	_, _ = conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		res = eval(ctx, p, keys, args...)
		role = p.Do(ctx, "ROLE")
		return nil
	})
	return res, role
}

// connectedReplicas reads a master's ROLE reply: the replicas connected.
func connectedReplicas(role *redis.Cmd) (int, bool) {
	r, err := role.Slice()
	if err != nil || len(r) < 3 || r[0] != "master" {
		return 0, false
	}
	replicas, ok := r[2].([]any)
	return len(replicas), ok
}

// nodeOf returns the client of the server that holds key: in a cluster
// the master of its slot, else the client itself.
func (s *Store) nodeOf(ctx context.Context, key string) (*redis.Client, error) {
	switch c := s.client.(type) {
	case *redis.Client:
		return c, nil
	case *redis.ClusterClient:
		return c.MasterForKey(ctx, key)
	}
	return nil, fmt.Errorf("state store %q: a %T cannot wait for replicas", s.name, s.client)
}

// replicas returns the number of replicas connected to node, looked up
// with INFO at most every 10 seconds: for a server that refuses ROLE.
func (s *Store) replicas(ctx context.Context, node *redis.Client) int {
	addr := node.Options().Addr
	s.strong.mu.Lock()
	defer s.strong.mu.Unlock()
	c := s.strong.byNode[addr]
	if time.Since(c.checked) < 10*time.Second {
		return c.replicas
	}
	info, err := node.Info(ctx, "replication").Result()
	if err != nil {
		return c.replicas
	}
	c = replicaCount{checked: time.Now()}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
			c.replicas, _ = strconv.Atoi(v)
		}
	}
	if s.strong.byNode == nil {
		s.strong.byNode = map[string]replicaCount{}
	}
	s.strong.byNode[addr] = c
	return c.replicas
}

type replicaCount struct {
	replicas int
	checked  time.Time
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

// ttlSeconds is d in whole seconds, rounded up; 0 for none. It cannot
// overflow: it divides before it rounds.
func ttlSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	n := int64(d / time.Second)
	if d%time.Second != 0 {
		n++
	}
	return n
}

var (
	_ state.Store         = (*Store)(nil)
	_ state.Transactional = (*Store)(nil)
	_ state.Pinger        = (*Store)(nil)
)
