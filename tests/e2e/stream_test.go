package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"
)

// streamSize is the size of the large transfers: 1 GiB, or 64 MiB with -short.
func streamSize() int64 {
	if testing.Short() {
		return 64 << 20
	}
	if s := os.Getenv("E2E_STREAM_BYTES"); s != "" {
		n, _ := strconv.ParseInt(s, 10, 64)
		return n
	}
	return 1 << 30
}

// rssLimit is the resident memory a sidecar may reach while streaming.
const rssLimit = 64 << 20

// cycle holds the testapp's pattern (0..250 repeated) long enough that any
// window of up to 256 KiB starts within its first 251 bytes.
var cycle = func() []byte {
	b := make([]byte, 251+256<<10)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

// patternAt returns the pattern's bytes from offset off, k of them (k <= 256 KiB).
func patternAt(off int64, k int) []byte {
	s := int(off % 251)
	return cycle[s : s+k]
}

// patternReader produces n bytes of the pattern without holding them.
type patternReader struct{ off, n int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	k := int(min(int64(len(b)), p.n-p.off, 256<<10))
	copy(b, patternAt(p.off, k))
	p.off += int64(k)
	return k, nil
}

func TestStreamLargeBodies(t *testing.T) {
	_, caller, callee := twoApps(t)
	n := streamSize()

	t.Run("upload", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", caller.url+"/v1.0/invoke/backend/method/upload", &patternReader{n: n})
		req.ContentLength = n
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got struct{ Bytes, Sum int64 }
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
			t.Fatalf("status %d: %v", resp.StatusCode, err)
		}
		if got.Bytes != n || got.Sum != patternSum(n) {
			t.Errorf("app received %d bytes with sum %d; want %d with sum %d", got.Bytes, got.Sum, n, patternSum(n))
		}
	})
	t.Run("upload of unknown length", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		size := n / 4
		req, _ := http.NewRequestWithContext(ctx, "POST", caller.url+"/v1.0/invoke/backend/method/upload", io.NopCloser(&patternReader{n: size}))
		req.ContentLength = -1 // chunked
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got struct{ Bytes, Sum int64 }
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || got.Bytes != size || got.Sum != patternSum(size) {
			t.Errorf("chunked upload: %+v, %v; want %d bytes", got, err, size)
		}
	})
	t.Run("download", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/v1.0/invoke/backend/method/download?n=%d", caller.url, n), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ContentLength != n {
			t.Errorf("Content-Length %d, want %d", resp.ContentLength, n)
		}
		var off int64
		buf := make([]byte, 256<<10)
		for {
			k, err := resp.Body.Read(buf)
			if !bytes.Equal(buf[:k], patternAt(off, k)) {
				t.Fatalf("bytes from offset %d differ from what the app sent", off)
			}
			off += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("after %d bytes: %v", off, err)
			}
		}
		if off != n {
			t.Errorf("downloaded %d bytes, want %d", off, n)
		}
	})
	for _, s := range []*sidecar{caller, callee} {
		rss := peakRSS(t, s.Proc)
		t.Logf("sidecar %s peak RSS after %d-byte transfers: %.1f MiB", s.appID, n, float64(rss)/(1<<20))
		if rss > rssLimit {
			t.Errorf("sidecar %s peak RSS %.1f MiB, over %d MiB", s.appID, float64(rss)/(1<<20), rssLimit>>20)
		}
	}
}

func patternSum(n int64) int64 {
	full, rest := n/251, n%251
	return full*(250*251/2) + (rest-1)*rest/2
}

func TestMaxBodySizeForInvocation(t *testing.T) {
	w := newWorld(t)
	port, _ := w.app("backend app")
	callee := w.sidecar("backend", port)
	caller := w.sidecar("frontend", 0, "--max-body-size", "1Ki")
	callee.waitHealthy(t)

	resp, b := do(t, "POST", caller.url+"/v1.0/invoke/backend/method/upload", &patternReader{n: 1024}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("1 KiB body: %d %s", resp.StatusCode, b)
	}
	for name, length := range map[string]int64{"known length": 2048, "chunked": -1} {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", caller.url+"/v1.0/invoke/backend/method/upload", io.NopCloser(&patternReader{n: 4096}))
			req.ContentLength = length
			if length > 0 {
				req.Body = io.NopCloser(&patternReader{n: length})
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e apiError
			_ = json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != 413 || e.ErrorCode != "ERR_BODY_TOO_LARGE" {
				t.Errorf("got %d %s %q, want 413 ERR_BODY_TOO_LARGE", resp.StatusCode, e.ErrorCode, e.Message)
			}
		})
	}
}
