package invoke

import (
	"context"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-run/tandem/internal/invoke/wire"
)

// readiness is a flag that, once set, stays set.
type readiness struct{ ok atomic.Bool }

func (r *readiness) set()        { r.ok.Store(true) }
func (r *readiness) isSet() bool { return r.ok.Load() }

// AppReady reports whether the app answers on its port. Once it has, the
// answer stays true (like Dapr: readiness is about start-up). A sidecar with
// no app port is always ready. With health checks (Config.Health), it is
// whether the app is healthy.
func (inv *Invoker) AppReady(ctx context.Context) bool {
	if inv.health != nil {
		return inv.health.unhealthy() == nil
	}
	if inv.appReady.isSet() {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", inv.cfg.AppAddress)
	if err != nil {
		return false
	}
	_ = conn.Close()
	inv.appReady.set()
	return true
}

// WaitAppReady polls the app port until it answers or ctx ends.
func (inv *Invoker) WaitAppReady(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !inv.AppReady(ctx) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// WriteResponse copies resp to w: status, headers less the hop-by-hop ones,
// the body, and trailers. A body of unknown length (a stream, such as
// server-sent events) is flushed after every read, so that each event
// reaches the caller when it is produced. It returns the copy's error.
func WriteResponse(w http.ResponseWriter, resp *http.Response) error {
	return writeResponse(w, resp, 0, false)
}

// writeResponse is WriteResponse; with stall > 0, a write of the answer that
// makes no progress for stall (the peer keeps its flow-control window shut)
// ends the stream. Waiting for the app to produce more is not a stall.
func writeResponse(w http.ResponseWriter, resp *http.Response, stall time.Duration, h2 bool) error {
	h := w.Header()
	removeHopByHop(resp.Header)
	delete(resp.Header, wire.HopError)
	copyHeader(h, resp.Header)
	for k := range resp.Trailer {
		h.Add("Trailer", k)
	}
	var g *stallGuard
	if stall > 0 {
		g = &stallGuard{rc: http.NewResponseController(w), d: stall}
		defer g.close()
		w = guardedWriter{w, g}
	}
	w.WriteHeader(resp.StatusCode)
	var err error
	if resp.ContentLength >= 0 && !isEventStream(resp.Header) {
		err = copyBody(w, resp.Body, resp.ContentLength)
	} else {
		err = copyFlushing(w, resp.Body)
	}
	// Trailers that were not announced (gRPC's never are) go out under
	// the TrailerPrefix form, which net/http sends as trailers either way.
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
	if g != nil && err == nil {
		// What is still buffered goes out under the guard too: after the
		// handler returns, the server would wait for the window unguarded.
		if h2 {
			// On HTTP/2 a write deadline bounds it, and it goes out with
			// the end of the stream, in one frame and one write: a flush
			// here would cost a frame (and a write) of its own. The
			// server stops the deadline's timer when the stream ends.
			err = g.rc.SetWriteDeadline(time.Now().Add(g.d))
		} else {
			// On HTTP/1.1 the deadline would outlive the response on a
			// kept-alive connection.
			err = w.(guardedWriter).flush()
		}
	}
	return err
}

// isEventStream reports a server-sent events answer, whatever its media
// type parameters.
func isEventStream(h http.Header) bool {
	const es = "text/event-stream"
	ct := h.Get("Content-Type")
	if len(ct) < len(es) || !strings.EqualFold(ct[:len(es)], es) {
		return false // without parsing, which allocates, on every answer
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == es
}

// stallGuard ends a stream whose writes make no progress: armed around each
// write, it sets a write deadline in the past when one takes longer than d,
// which resets the stream and fails the write. It never fires after close.
type stallGuard struct {
	rc *http.ResponseController
	d  time.Duration
	t  *time.Timer

	mu   sync.Mutex
	done bool
}

func (g *stallGuard) arm() {
	if g.t == nil {
		g.t = time.AfterFunc(g.d, g.fire)
		return
	}
	g.t.Reset(g.d)
}

func (g *stallGuard) disarm() { g.t.Stop() }

func (g *stallGuard) fire() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.done {
		_ = g.rc.SetWriteDeadline(time.Unix(1, 0))
	}
}

func (g *stallGuard) close() {
	g.mu.Lock()
	g.done = true
	g.mu.Unlock()
	if g.t != nil {
		g.t.Stop()
	}
}

// guardedWriter arms its guard around every write and flush.
type guardedWriter struct {
	http.ResponseWriter
	g *stallGuard
}

func (w guardedWriter) Write(p []byte) (int, error) {
	w.g.arm()
	defer w.g.disarm()
	return w.ResponseWriter.Write(p)
}

func (w guardedWriter) flush() error {
	w.g.arm()
	defer w.g.disarm()
	return w.g.rc.Flush()
}

// FlushError flushes under the guard (http.ResponseController finds it).
func (w guardedWriter) FlushError() error { return w.flush() }

// Unwrap gives http.ResponseController the writer underneath.
func (w guardedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// The buffers a body is copied through. The writers the API and the hop
// hand writeResponse are wrapped (tracing, metrics, the stall guard), which
// hides the ReaderFrom of net/http's, and its pooled buffers, from
// io.Copy: io.Copy made a 32 KB buffer on every call, two on a proxied
// call, two thirds of the bytes the call allocated. A body known to be
// small takes a small buffer.
const (
	smallBuf = 4 << 10
	largeBuf = 32 << 10
)

var (
	smallBufs = sync.Pool{New: func() any { return new([smallBuf]byte) }}
	largeBufs = sync.Pool{New: func() any { return new([largeBuf]byte) }}
)

// copyBody copies src, of length n (-1: unknown), to w through a pooled
// buffer.
func copyBody(w io.Writer, src io.Reader, n int64) error {
	var err error
	if n >= 0 && n < smallBuf {
		b := smallBufs.Get().(*[smallBuf]byte)
		_, err = io.CopyBuffer(w, src, b[:])
		smallBufs.Put(b)
	} else {
		b := largeBufs.Get().(*[largeBuf]byte)
		_, err = io.CopyBuffer(w, src, b[:])
		largeBufs.Put(b)
	}
	return err
}

// copyFlushing copies src to w and flushes after every read.
func copyFlushing(w http.ResponseWriter, src io.Reader) error {
	rc := http.NewResponseController(w)
	b := largeBufs.Get().(*[largeBuf]byte)
	defer largeBufs.Put(b)
	buf := b[:]
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
