package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/redis"
)

// txCase is one transaction shape to time.
type txCase struct {
	name   string
	ops    int
	upsert bool // upserts of txValueSize bytes, each with its ETag; else deletes
	runs   int
}

// txValueSize makes the default-sized upsert transaction about as large as
// the default 4 MiB body limit lets a request be.
const txValueSize = 4000

// transactions times state transactions against a real redis-server with
// the Redis store, and measures how long Redis is held meanwhile: the
// longest PING another client saw while it ran, and the longest single
// command in Redis's SLOWLOG. It writes a Markdown report to out.
func transactions(o options, out string) error {
	dir, err := os.MkdirTemp("", "tandem-tx-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e := &env{o: o, dir: dir}
	rp, err := e.startRedis()
	if err != nil {
		return err
	}
	defer rp.stop()
	ctx := context.Background()
	admin := goredis.NewClient(&goredis.Options{Addr: e.redis, ReadTimeout: 2 * time.Minute})
	defer admin.Close()
	for _, kv := range [][2]string{{"slowlog-log-slower-than", "100"}, {"slowlog-max-len", "10000"}} {
		if err := admin.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			return fmt.Errorf("redis: config set %s: %w", kv[0], err)
		}
	}
	// Generous timeouts: the point is to see how long it takes, not to cut it short.
	cfg, err := redis.ParseMetadata(map[string]string{"redisHost": e.redis, "readTimeout": "120s", "writeTimeout": "120s"})
	if err != nil {
		return err
	}
	st := redis.Open("bench", cfg)
	defer st.Close()

	limit := state.DefaultMaxTransactionOperations
	cases := []txCase{
		{fmt.Sprintf("%d upserts of %d B, each with its ETag (the default limit, ~4 MiB body)", limit, txValueSize), limit, true, 5},
		{fmt.Sprintf("%d deletes (the default limit)", limit), limit, false, 5},
		{"85,000 deletes (the reported attack's shape; refused by the default limit)", 85000, false, 1},
		{fmt.Sprintf("%d deletes (the highest maxTransactionOperations allows)", state.HighestMaxTransactionOperations), state.HighestMaxTransactionOperations, false, 1},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# How long a state transaction holds Redis\n\n")
	fmt.Fprintf(&b, "`go run ./bench -transactions bench/TRANSACTIONS.md` on %s, %s, %s. The Redis store's Transact against a real redis-server on loopback; "+
		"while it runs a second client sends PINGs back to back. \"Longest PING\" is the worst a bystander waited; \"longest command\" is the slowest single command in Redis's SLOWLOG (one command is what blocks Redis). Keys exist before each run.\n\n",
		machine(), redisVersion(ctx, admin), time.Now().UTC().Format("2006-01-02"))
	b.WriteString("| transaction | runs | time (median) | time (max) | longest PING | longest command |\n|---|---:|---:|---:|---:|---:|\n")
	for _, c := range cases {
		var took, ping, cmd []time.Duration
		for range c.runs {
			t, p, s, err := timeTransaction(ctx, admin, st, c)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			took, ping, cmd = append(took, t), append(ping, p), append(cmd, s)
		}
		slices.Sort(took)
		line := fmt.Sprintf("| %s | %d | %s | %s | %s | %s |", c.name, c.runs, ms(took[len(took)/2]), ms(took[len(took)-1]), ms(slices.Max(ping)), ms(slices.Max(cmd)))
		log.Print(line)
		b.WriteString(line + "\n")
	}
	b.WriteString("\nThe state API refuses a transaction of more operations than the store's `maxTransactionOperations` (default " + itoa(limit) + ") with a 400 before it reaches Redis.\n")
	fmt.Print(b.String())
	if out == "" {
		return nil
	}
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

// timeTransaction fills Redis for c, runs it once and returns its time, the
// longest PING of another client meanwhile and the longest command logged.
func timeTransaction(ctx context.Context, admin *goredis.Client, st *redis.Store, c txCase) (took, ping, cmd time.Duration, err error) {
	if err := admin.FlushAll(ctx).Err(); err != nil {
		return 0, 0, 0, err
	}
	value := strings.Repeat("v", txValueSize)
	ops := make([]state.Op, c.ops)
	for i := 0; i < c.ops; i += 1000 {
		p := admin.Pipeline()
		for j := i; j < min(i+1000, c.ops); j++ {
			p.HSet(ctx, "tx-"+itoa(j), "data", "old", "version", 1)
		}
		if _, err := p.Exec(ctx); err != nil {
			return 0, 0, 0, err
		}
	}
	one := "1"
	for i := range ops {
		k := "tx-" + itoa(i)
		if c.upsert {
			ops[i].Set = &state.SetRequest{Key: k, Value: []byte(value), ETag: &one}
		} else {
			ops[i].Delete = &state.DeleteRequest{Key: k}
		}
	}
	if err := admin.SlowLogReset(ctx).Err(); err != nil {
		return 0, 0, 0, err
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { ping = pingUntil(ctx, admin.Options().Addr, stop) })
	time.Sleep(20 * time.Millisecond) // the prober is running
	start := time.Now()
	err = st.Transact(ctx, ops)
	took = time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil {
		return 0, 0, 0, err
	}
	logs, err := admin.SlowLogGet(ctx, -1).Result()
	if err != nil {
		return 0, 0, 0, err
	}
	for _, l := range logs {
		cmd = max(cmd, l.Duration)
	}
	return took, ping, cmd, nil
}

// pingUntil sends PINGs on its own connection back to back until stop and
// returns the longest wait.
func pingUntil(ctx context.Context, addr string, stop <-chan struct{}) time.Duration {
	c := goredis.NewClient(&goredis.Options{Addr: addr, PoolSize: 1, ReadTimeout: 2 * time.Minute})
	defer c.Close()
	var longest time.Duration
	for {
		select {
		case <-stop:
			return longest
		default:
		}
		t := time.Now()
		if err := c.Ping(ctx).Err(); err != nil {
			log.Printf("ping: %v", err)
		}
		longest = max(longest, time.Since(t))
	}
}

func redisVersion(ctx context.Context, c *goredis.Client) string {
	info, _ := c.Info(ctx, "server").Result()
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return "redis " + v
		}
	}
	return "redis"
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + " ms"
}
