package redisconn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// reloadOnNodeError makes a cluster client read the cluster's slots again
// (CLUSTER SLOTS) as soon as a command fails to reach a node: refused,
// reset, timed out. go-redis reads them again on MOVED or ASK, which a
// dead master never answers, and otherwise once a minute: without this the
// slots of a killed master would stay on it, and their commands fail, for
// up to a minute after its replica took them over. go-redis runs one
// reload at a time and at most one per 200ms, so a burst of failures asks
// once.
type reloadOnNodeError struct{ c *redis.ClusterClient }

func (h reloadOnNodeError) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnNodeError) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.after(ctx, err)
		return err
	}
}

func (h reloadOnNodeError) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.after(ctx, err)
		return err
	}
}

func (h reloadOnNodeError) after(ctx context.Context, err error) {
	if nodeUnreachable(err) {
		h.c.ReloadState(ctx)
	}
}

// nodeUnreachable says whether err is a failure to reach a node, not an
// answer of the server (redis.Error, a missing key included), nor the
// caller giving up or the client closed.
func nodeUnreachable(err error) bool {
	var answer redis.Error
	switch {
	case err == nil, errors.As(err, &answer), errors.Is(err, context.Canceled), errors.Is(err, redis.ErrClosed):
		return false
	}
	return true
}

// Redirected reads a cluster's MOVED or ASK answer: the node to send the
// command to, and whether it is ASK (the slot is moving there: ASKING
// first). A command sent on a node's own connection (a write that WAIT
// follows, a blocking read) gets it where the cluster client would have
// followed it.
func Redirected(err error) (addr string, ask, ok bool) {
	if err == nil {
		return "", false, false
	}
	f := strings.Fields(err.Error())
	if len(f) != 3 || (f[0] != "MOVED" && f[0] != "ASK") {
		return "", false, false
	}
	return f[2], f[0] == "ASK", true
}

// Master returns c's client of the master at addr, which a MOVED or ASK
// named, and has c read the cluster's slots again.
func Master(ctx context.Context, c *redis.ClusterClient, addr string) (*redis.Client, error) {
	c.ReloadState(ctx)
	var mu sync.Mutex
	var found *redis.Client
	err := c.ForEachMaster(ctx, func(_ context.Context, m *redis.Client) error {
		if m.Options().Addr == addr {
			mu.Lock()
			found = m
			mu.Unlock()
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case found == nil:
		return nil, fmt.Errorf("redirected to %s, a node the cluster does not name as a master yet", addr)
	}
	return found, nil
}
