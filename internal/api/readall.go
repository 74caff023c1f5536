package api

import "io"

// presize is the most ReadAll allocates before the bytes arrive: a
// Content-Length a client announces and does not send costs no more.
const presize = 64 << 10

// ReadAll is io.ReadAll of a body of announced length n (-1: unknown),
// sized for it in one allocation when the body is small, instead of
// io.ReadAll's growing from 512 bytes.
func ReadAll(rd io.Reader, n int64) ([]byte, error) {
	if n < 0 || n >= presize {
		return io.ReadAll(rd)
	}
	b := make([]byte, 0, n+1) // +1: room to see EOF without growing
	for {
		m, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // more than announced: grow as ReadAll does
		}
	}
}
