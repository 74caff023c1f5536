package invoke

import (
	"io"
	"sync"
)

// Ahead is a pipe that holds one chunk, so that its writer takes the next
// chunk, or the end of the stream, while the reader sends the one before.
// A body whose last bytes and end are read together goes out on HTTP/2 as
// one DATA frame that ends the stream, in one write: through a pipe that
// holds nothing (io.Pipe, or net/http's request body, which gives the end
// in a read of its own) the data and the end take a frame and a write
// each, and the peer wakes for each. At most one chunk waits, so a stream
// is held back as a pipe holds it back. A proxied gRPC call's body is one.
type Ahead struct {
	mu      sync.Mutex
	cond    sync.Cond
	pending []byte // what the reader has not read of the chunk put
	done    bool   // the stream has ended
	err     error  // why, when not io.EOF
	closed  bool   // the reader has closed the pipe
	drained func() // run once, when the reader has read the end
}

// NewAhead returns an empty Ahead.
func NewAhead() *Ahead {
	a := &Ahead{}
	a.cond.L = &a.mu
	return a
}

// Put hands p over to the reader once the chunk before has been read, and
// reports false if the reader has closed the pipe. The reader owns p.
func (a *Ahead) Put(p []byte) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for len(a.pending) > 0 && !a.closed {
		a.cond.Wait()
	}
	if a.closed {
		return false
	}
	a.pending = p
	a.cond.Broadcast()
	return true
}

// CloseWithError ends the stream: the reader gets io.EOF when err is nil,
// else err, after what was put.
func (a *Ahead) CloseWithError(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.done, a.err = true, err
	a.cond.Broadcast()
}

// Read reads the chunk put, and reports the stream's end with its last
// bytes when it has ended by then.
func (a *Ahead) Read(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for len(a.pending) == 0 && !a.done && !a.closed {
		a.cond.Wait()
	}
	if a.closed {
		return 0, io.ErrClosedPipe
	}
	n := copy(p, a.pending)
	a.pending = a.pending[n:]
	if len(a.pending) > 0 {
		return n, nil
	}
	a.pending = nil
	a.cond.Broadcast()
	if !a.done {
		return n, nil
	}
	if a.drained != nil {
		a.drained()
		a.drained = nil
	}
	if a.err != nil {
		return n, a.err
	}
	return n, io.EOF
}

// Close is the reader's: the writer's next Put reports false.
func (a *Ahead) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	a.cond.Broadcast()
	return nil
}

// aheadChunk is the size of readAhead's two buffers: HTTP/2's default
// frame size.
const aheadChunk = 16 << 10

var aheadBufs = sync.Pool{New: func() any { return new([2 * aheadChunk]byte) }}

// readAhead reads r into an Ahead from a goroutine of its own, through two
// buffers in turn (the reader is done with one before the other is put).
// The goroutine ends with r (the hop's request body ends with its
// handler) or when the Ahead is closed. The buffers are reused once the
// reader has read the end; a reader that closes first leaves them to the
// collector, as the goroutine may still be reading into one.
func readAhead(r io.Reader) *Ahead {
	a := NewAhead()
	b := aheadBufs.Get().(*[2 * aheadChunk]byte)
	a.drained = func() { aheadBufs.Put(b) }
	go func() {
		bufs := [2][]byte{b[:aheadChunk], b[aheadChunk:]}
		for i := 0; ; i ^= 1 {
			n, err := r.Read(bufs[i])
			if n > 0 && !a.Put(bufs[i][:n]) {
				return
			}
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				a.CloseWithError(err)
				return
			}
		}
	}()
	return a
}
