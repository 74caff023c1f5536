package invoke

import (
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A unary call's message and the end of its stream are read together, so
// the hop sends them as one DATA frame; a stream is held back one frame
// ahead; the reader's Close frees the writer.
func TestAhead(t *testing.T) {
	b := NewAhead()
	if !b.Put([]byte("hello")) {
		t.Fatal("put refused")
	}
	b.CloseWithError(nil)
	p := make([]byte, 64)
	if n, err := b.Read(p); n != 5 || err != io.EOF || string(p[:n]) != "hello" {
		t.Fatalf("Read = %d %q %v, want 5 \"hello\" EOF together", n, p[:n], err)
	}

	b = NewAhead()
	b.Put([]byte("abcdef"))
	second := make(chan bool)
	go func() { second <- b.Put([]byte("gh")) }()
	select {
	case <-second:
		t.Fatal("a second frame was taken before the first was read")
	case <-time.After(50 * time.Millisecond):
	}
	small := make([]byte, 4)
	if n, err := b.Read(small); n != 4 || err != nil || string(small) != "abcd" {
		t.Fatalf("Read = %d %q %v", n, small[:n], err)
	}
	if n, err := b.Read(small); n != 2 || err != nil || string(small[:n]) != "ef" {
		t.Fatalf("Read = %d %q %v", n, small[:n], err)
	}
	if !<-second {
		t.Fatal("the second frame was refused")
	}
	b.CloseWithError(errors.New("client went away"))
	if n, err := b.Read(p); n != 2 || err == nil || err.Error() != "client went away" {
		t.Fatalf("Read = %d %v, want the last bytes and the stream's error", n, err)
	}

	b = NewAhead()
	b.Put([]byte("x"))
	refused := make(chan bool)
	go func() { refused <- b.Put([]byte("y")) }()
	_ = b.Close()
	if <-refused {
		t.Fatal("put after the reader closed reported true")
	}
	if _, err := b.Read(p); err != io.ErrClosedPipe {
		t.Fatalf("Read after Close: %v", err)
	}
}

// readAhead takes the end of the stream while the reader has not read yet,
// and hands on a stream's error; its goroutine ends when the reader closes.
func TestReadAhead(t *testing.T) {
	a := readAhead(strings.NewReader("payload"))
	for ended := false; !ended; {
		a.mu.Lock()
		ended = a.done
		a.mu.Unlock()
		runtime.Gosched()
	}
	p := make([]byte, 64)
	if n, err := a.Read(p); n != 7 || err != io.EOF {
		t.Fatalf("Read = %d %v, want 7 and EOF together", n, err)
	}

	big := strings.Repeat("0123456789", 5000) // several chunks
	got, err := io.ReadAll(readAhead(strings.NewReader(big)))
	if err != nil || string(got) != big {
		t.Fatalf("ReadAll: %d bytes, %v", len(got), err)
	}

	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte("part"))
		_ = pw.CloseWithError(errors.New("stream reset"))
	}()
	got, err = io.ReadAll(readAhead(pr))
	if string(got) != "part" || err == nil || err.Error() != "stream reset" {
		t.Fatalf("ReadAll = %q %v", got, err)
	}

	pr, pw = io.Pipe()
	a = readAhead(pr)
	go func() { _, _ = pw.Write([]byte("one")); _, _ = pw.Write([]byte("two")) }()
	if n, _ := a.Read(p); string(p[:n]) != "one" {
		t.Fatalf("Read = %q", p[:n])
	}
	_ = a.Close()
	_ = pw.Close() // the goroutine's Put of "two" is refused, or its next Read ends
	if _, err := a.Read(p); err != io.ErrClosedPipe {
		t.Fatalf("Read after Close: %v", err)
	}
}
