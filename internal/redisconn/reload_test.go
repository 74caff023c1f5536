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

func TestRedirected(t *testing.T) {
	for _, c := range []struct {
		err     error
		addr    string
		ask, ok bool
	}{
		{nil, "", false, false},
		{errors.New("MOVED 3999 127.0.0.1:6381"), "127.0.0.1:6381", false, true},
		{errors.New("ASK 3999 10.0.0.2:6379"), "10.0.0.2:6379", true, true},
		{errors.New("ERR MOVED things"), "", false, false},
		{errors.New("CLUSTERDOWN The cluster is down"), "", false, false},
	} {
		addr, ask, ok := Redirected(c.err)
		if addr != c.addr || ask != c.ask || ok != c.ok {
			t.Errorf("Redirected(%v) = %q, %v, %v", c.err, addr, ask, ok)
		}
	}
}
