package invoke

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// readiness is a flag that, once set, stays set.
type readiness struct{ ok atomic.Bool }

func (r *readiness) set()        { r.ok.Store(true) }
func (r *readiness) isSet() bool { return r.ok.Load() }

// AppReady reports whether the app answers on its port. Once it has, the
// answer stays true (like Dapr: readiness is about start-up). A sidecar with
// no app port is always ready.
func (inv *Invoker) AppReady(ctx context.Context) bool {
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
	h := w.Header()
	removeHopByHop(resp.Header)
	delete(resp.Header, HeaderHopError)
	copyHeader(h, resp.Header)
	for k := range resp.Trailer {
		h.Add("Trailer", k)
	}
	w.WriteHeader(resp.StatusCode)
	var err error
	if resp.ContentLength >= 0 && resp.Header.Get("Content-Type") != "text/event-stream" {
		_, err = io.Copy(w, resp.Body)
	} else {
		err = copyFlushing(w, resp.Body)
	}
	// Trailers that were not announced (gRPC's never are) go out under
	// the TrailerPrefix form, which net/http sends as trailers either way.
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
	return err
}

var bufPool = make(chan []byte, 64)

func getBuf() []byte {
	select {
	case b := <-bufPool:
		return b
	default:
		return make([]byte, 32<<10)
	}
}

func putBuf(b []byte) {
	select {
	case bufPool <- b:
	default:
	}
}

// copyFlushing copies src to w and flushes after every read.
func copyFlushing(w http.ResponseWriter, src io.Reader) error {
	rc := http.NewResponseController(w)
	buf := getBuf()
	defer putBuf(buf)
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
