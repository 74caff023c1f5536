package api

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// ReadAll reads what is there whatever the length announced: exact, less,
// more, unknown, over its presize, and one byte at a time.
func TestReadAll(t *testing.T) {
	body := bytes.Repeat([]byte("abc"), 1000)
	for _, c := range []struct {
		name string
		n    int64
		r    io.Reader
	}{
		{"exact", int64(len(body)), bytes.NewReader(body)},
		{"announced less", 10, bytes.NewReader(body)},
		{"announced more", int64(len(body)) * 2, bytes.NewReader(body)},
		{"unknown", -1, bytes.NewReader(body)},
		{"over presize", presize + 1, bytes.NewReader(body)},
		{"a byte at a time", int64(len(body)), iotest.OneByteReader(bytes.NewReader(body))},
	} {
		got, err := ReadAll(c.r, c.n)
		if err != nil || !bytes.Equal(got, body) {
			t.Errorf("%s: %d bytes, %v; want %d bytes", c.name, len(got), err, len(body))
		}
	}
	boom := errors.New("boom")
	got, err := ReadAll(io.MultiReader(bytes.NewReader(body[:5]), iotest.ErrReader(boom)), 100)
	if !errors.Is(err, boom) || string(got) != string(body[:5]) {
		t.Errorf("a failing reader: %q, %v; want what came before the error, and the error", got, err)
	}
}
