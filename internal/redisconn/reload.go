package redisconn

import (
	"context"
	"errors"

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
