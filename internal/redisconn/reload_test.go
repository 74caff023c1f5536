package redisconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Only a failure to reach a node makes the cluster client read its slots
// again: not an answer of the server, nor the caller giving up.
func TestNodeUnreachable(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	cases := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{redis.Nil, false},
		{fmt.Errorf("wrapped: %w", redis.Nil), false},
		{redisAnswer("MOVED 3999 127.0.0.1:6381"), false},
		{redisAnswer("ERR wrong number of arguments"), false},
		{context.Canceled, false},
		{redis.ErrClosed, false},
		{refused, true},
		{io.EOF, true},
		{context.DeadlineExceeded, true},
	}
	for _, c := range cases {
		if got := nodeUnreachable(c.err); got != c.want {
			t.Errorf("nodeUnreachable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// redisAnswer is an answer of the server, as go-redis types one.
type redisAnswer string

func (e redisAnswer) Error() string { return string(e) }
func (redisAnswer) RedisError()     {}
