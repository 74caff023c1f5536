package redis

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/redisconn"
	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/pkg/state"
)

// op is one request of a load: when it started and ended, its key's
// slot, and its error.
type op struct {
	start, end time.Time
	slot       int
	err        error
}

// load writes and reads keys from workers goroutines until stop is
// closed: each worker owns keys[w::workers], sets one to a value of its
// own, then reads it back and checks it is that value (a mismatch is an
// error too).
type load struct {
	st      *Store
	keys    []string
	workers int
	verify  bool // a read must return the last acknowledged write
	strong  bool // writes with strong consistency

	mu  sync.Mutex
	ops []op
	ok  atomic.Int64
}

func (l *load) run(stop <-chan struct{}) (wait func()) {
	var wg sync.WaitGroup
	ctx := context.Background()
	for w := range l.workers {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				key := l.keys[w+n%(len(l.keys)/l.workers)*l.workers]
				v := fmt.Sprintf("w%d-%d", w, n)
				start := time.Now()
				err := l.st.Set(ctx, state.SetRequest{Key: key, Value: []byte(v), Strong: l.strong})
				l.record(start, key, err)
				start = time.Now()
				it, err := l.st.Get(ctx, key)
				if err == nil && l.verify && (it == nil || string(it.Value) != v) {
					err = fmt.Errorf("read %q back as %+v after writing %q", key, it, v)
				}
				l.record(start, key, err)
			}
		})
	}
	return wg.Wait
}

func (l *load) record(start time.Time, key string, err error) {
	if err == nil {
		l.ok.Add(1)
	}
	l.mu.Lock()
	l.ops = append(l.ops, op{start: start, end: time.Now(), slot: redisconn.Slot(key), err: err})
	l.mu.Unlock()
}

// waitOK waits until n more requests have succeeded.
func (l *load) waitOK(t *testing.T, n int64) {
	t.Helper()
	want := l.ok.Load() + n
	deadline := time.Now().Add(60 * time.Second)
	for l.ok.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("the load did not reach %d more successful requests in 60s", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func clusterKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("app||key-%d", i)
	}
	return keys
}

// A master of a cluster killed under a steady load of writes and reads
// over keys of every master: requests to the other masters' slots never
// fail, and requests to its slots succeed again within 5s of its
// replica's promotion.
func TestClusterMasterKilledUnderLoad(t *testing.T) {
	c := redisserver.StartClusterReplicas(t, 3)
	// Generous timeouts: a busy machine must not fail a request (a dead
	// master refuses connections at once).
	st := openMD(t, map[string]string{"redisHost": c.Addrs(), "redisType": "cluster", "dialTimeout": "5s", "readTimeout": "5s", "writeTimeout": "5s"})
	l := &load{st: st, keys: clusterKeys(300), workers: 8}
	victim := map[int]bool{}
	for _, k := range l.keys {
		if s := redisconn.Slot(k); c.Owner(t, s) == 0 {
			victim[s] = true
		}
	}
	if len(victim) == 0 || len(victim) == len(l.keys) {
		t.Fatalf("%d of %d keys on the master to kill", len(victim), len(l.keys))
	}
	stop := make(chan struct{})
	wait := l.run(stop)
	l.waitOK(t, 500)
	killed := time.Now()
	promoted := c.KillMaster(t, 0)
	// Load for 8s after the promotion.
	time.Sleep(time.Until(promoted.Add(8 * time.Second)))
	l.waitOK(t, 500)
	close(stop)
	wait()

	var other, victimFailed, lateFailed, victimOK int
	var lastFail, firstOK time.Time
	var firstErr, lateErr error
	for _, o := range l.ops {
		switch {
		case !victim[o.slot] && o.err != nil:
			if other == 0 {
				firstErr = o.err
			}
			other++
		case victim[o.slot] && o.err != nil:
			victimFailed++
			if o.end.After(lastFail) {
				lastFail = o.end
			}
			if o.start.After(promoted.Add(5 * time.Second)) {
				lateFailed++
				lateErr = o.err
			}
		case victim[o.slot] && o.start.After(promoted):
			victimOK++
			if firstOK.IsZero() || o.end.Before(firstOK) {
				firstOK = o.end
			}
		}
	}
	t.Logf("%d requests; master killed, its replica promoted %s later; on its slots %d failed, the last ending %s after the promotion, the first success after it %s after; %d failed on the other masters' slots",
		len(l.ops), promoted.Sub(killed).Round(time.Millisecond), victimFailed,
		lastFail.Sub(promoted).Round(time.Millisecond), firstOK.Sub(promoted).Round(time.Millisecond), other)
	if other > 0 {
		t.Errorf("%d requests to the other masters' slots failed, the first: %v", other, firstErr)
	}
	if lateFailed > 0 {
		t.Errorf("%d requests to the killed master's slots started more than 5s after the promotion failed, the last: %v", lateFailed, lateErr)
	}
	if victimOK == 0 {
		t.Error("no request to the killed master's slots succeeded after the promotion")
	}
}

// Slots holding live keys move between masters (IMPORTING, MIGRATING,
// MIGRATE, SETSLOT NODE) under a steady load of writes and reads that
// check what they read: no request fails and every read returns the
// value just written, the client following MOVED and ASK; writes with
// strong consistency too, which go to the key's master on a connection
// of their own.
func TestClusterReshardUnderLoad(t *testing.T) {
	for _, strong := range []bool{false, true} {
		t.Run(fmt.Sprintf("strong=%v", strong), func(t *testing.T) { reshardUnderLoad(t, strong) })
	}
}

func reshardUnderLoad(t *testing.T, strong bool) {
	// Strong writes wait for the replicas of the key's master.
	var c *redisserver.Cluster
	if strong {
		c = redisserver.StartClusterReplicas(t, 3)
	} else {
		c = redisserver.StartCluster(t, 3)
	}
	// Generous timeouts: a busy machine must not fail a request (a dead
	// master refuses connections at once).
	st := openMD(t, map[string]string{"redisHost": c.Addrs(), "redisType": "cluster", "dialTimeout": "5s", "readTimeout": "5s", "writeTimeout": "5s"})
	l := &load{st: st, keys: clusterKeys(150), workers: 8, verify: true, strong: strong}
	// Every slot of a key on master 0 moves to master 1, and every
	// slot of a key on master 1 to master 2.
	var moves [][3]int
	seen := map[int]bool{}
	for _, k := range l.keys {
		s := redisconn.Slot(k)
		if seen[s] {
			continue
		}
		seen[s] = true
		if o := c.Owner(t, s); o < 2 {
			moves = append(moves, [3]int{s, o, o + 1})
		}
	}
	stop := make(chan struct{})
	wait := l.run(stop)
	l.waitOK(t, 500)
	keys := 0
	start := time.Now()
	for _, m := range moves {
		keys += c.MoveSlot(t, m[0], m[1], m[2])
	}
	took := time.Since(start)
	l.waitOK(t, 500)
	close(stop)
	wait()
	for _, m := range moves {
		if o := c.Owner(t, m[0]); o != m[2] {
			t.Fatalf("slot %d on master %d after the move to %d", m[0], o, m[2])
		}
	}
	failed := 0
	var first error
	during := 0
	for _, o := range l.ops {
		if o.err != nil {
			if failed == 0 {
				first = o.err
			}
			failed++
		}
		if o.start.After(start) && o.end.Before(start.Add(took)) {
			during++
		}
	}
	t.Logf("%d slots holding %d keys moved in %s under load; %d requests, %d during the moves, %d failed",
		len(moves), keys, took.Round(time.Millisecond), len(l.ops), during, failed)
	if keys == 0 {
		t.Error("no key moved")
	}
	if failed > 0 {
		t.Errorf("%d requests failed during the resharding, the first: %v", failed, first)
	}
}
