// Command testapp is the app the end-to-end tests invoke through sidecars.
// It listens on $APP_PORT and answers:
//
//	/echo/...        the request as JSON: method, path, raw query, headers, body
//	/status/{code}   that status, with an X-Test header and a short body
//	/download?n=N    N bytes of a repeating pattern, with Content-Length
//	/upload          reads the whole body, answers {"bytes":N,"sum":S}
//	/sse?n=N         N server-sent events; event i>0 waits for GET /release
//	/slow            blocks until GET /release, then answers "done"
//	/slow/waiting    how many /slow calls are waiting
//	/release         releases one waiting /sse event or /slow call
//	/trailer         a chunked body followed by an X-Sum trailer
//
// and, for pub/sub:
//
//	GET /dapr/subscribe  $SUBSCRIBE (the app's subscriptions, JSON); 404 without it
//	POST /events/...     records the delivery and answers by the event's
//	                     data.answer: "DROP" DROP, "RETRY_ONCE" RETRY the
//	                     first time its id comes, "HOLD_ONCE" no answer the
//	                     first time until the caller goes away, else SUCCESS;
//	                     data.sleep (a Go duration) waits that long first
//	                     (less when the caller goes away)
//	GET /deliveries      the deliveries recorded: [{path, contentType, event}]
//	POST /bulk/...       records a bulk delivery and answers a status per
//	                     entry by its event's data.answer: "DROP" DROP,
//	                     "RETRY_ONCE" RETRY the first time its id comes,
//	                     "OMIT_ONCE" no status the first time, else SUCCESS
//	GET /bulk-deliveries the bulk deliveries recorded: [{path, contentType, body}]
//
// With $DELIVERIES_FILE set, each delivery is also appended to that file
// as two JSON lines, written as it starts and as it ends (its answer
// sent), so that they outlive the process (SIGKILL) and overlapping
// deliveries of one event show: {"d":"<pid>-<seq>","id":...,"start":ns}
// and {"d":"<pid>-<seq>","end":ns,"status":...} (wall clock, ns).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/echo/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-App-Header", "from-app")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"method":  r.Method,
			"path":    r.URL.EscapedPath(),
			"query":   r.URL.RawQuery,
			"headers": r.Header,
			"body":    string(body),
			"host":    r.Host,
		})
	})
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.PathValue("code"))
		if err != nil {
			http.Error(w, "bad code", http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Test", "status-"+r.PathValue("code"))
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "status body")
	})
	mux.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.Header().Set("Content-Type", "application/octet-stream")
		buf := pattern(251 * 256) // a whole number of cycles, so chunks join up
		for n > 0 {
			k := min(n, int64(len(buf)))
			if _, err := w.Write(buf[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		var total, sum int64
		buf := make([]byte, 64<<10)
		for {
			n, err := r.Body.Read(buf)
			for _, b := range buf[:n] {
				sum += int64(b)
			}
			total += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]int64{"bytes": total, "sum": sum})
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		fl := w.(http.Flusher)
		for i := range n {
			if i > 0 {
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprintf(w, "id: %d\ndata: event %d\n\n", i, i)
			fl.Flush()
		}
	})
	var waiting atomic.Int64
	mux.HandleFunc("/slow/waiting", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, waiting.Load())
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		waiting.Add(1)
		defer waiting.Add(-1)
		select {
		case <-release:
			_, _ = io.WriteString(w, "done")
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/release", func(w http.ResponseWriter, r *http.Request) {
		release <- struct{}{}
	})
	mux.HandleFunc("/trailer", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		_, _ = io.WriteString(w, strings.Repeat("t", 100))
		w.(http.Flusher).Flush()
		w.Header().Set("X-Sum", "100")
	})
	subscribe(mux)
	addr := "127.0.0.1:" + os.Getenv("APP_PORT")
	log.Printf("testapp listening on %s", addr)
	log.Fatal(http.ListenAndServe(addr, mux))
}

// pattern returns n bytes of 0..250 repeated.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// delivery is an event the app was given.
type delivery struct {
	Path        string          `json:"path"`
	ContentType string          `json:"contentType"`
	Event       json.RawMessage `json:"event"`
}

// bulkDelivery is a bulk request as the app got it.
type bulkDelivery struct {
	Path        string          `json:"path"`
	ContentType string          `json:"contentType"`
	Body        json.RawMessage `json:"body"`
}

// subscribe serves the pub/sub routes.
func subscribe(mux *http.ServeMux) {
	var (
		mu         sync.Mutex
		deliveries = []delivery{}
		seen       = map[string]int{} // deliveries by event id
		seq        atomic.Int64
		record     = func(any) {}
	)
	if name := os.Getenv("DELIVERIES_FILE"); name != "" {
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			log.Fatal(err)
		}
		var fmu sync.Mutex
		record = func(v any) {
			b, _ := json.Marshal(v)
			fmu.Lock()
			defer fmu.Unlock()
			// One write per line, to the kernel at once: it outlives a
			// SIGKILL of this process.
			if _, err := f.Write(append(b, '\n')); err != nil {
				log.Fatal(err)
			}
		}
	}
	mux.HandleFunc("GET /dapr/subscribe", func(w http.ResponseWriter, r *http.Request) {
		subs := os.Getenv("SUBSCRIBE")
		if subs == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, subs)
	})
	mux.HandleFunc("POST /events/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var ce struct {
			ID   string `json:"id"`
			Data struct {
				Answer string `json:"answer"`
				Sleep  string `json:"sleep"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &ce) // data need not be an object
		d := fmt.Sprintf("%d-%d", os.Getpid(), seq.Add(1))
		record(map[string]any{"d": d, "id": ce.ID, "start": time.Now().UnixNano()})
		status := "SUCCESS"
		defer func() { record(map[string]any{"d": d, "end": time.Now().UnixNano(), "status": status}) }()
		if !json.Valid(body) {
			body, _ = json.Marshal(string(body))
		}
		mu.Lock()
		seen[ce.ID]++
		n := seen[ce.ID]
		deliveries = append(deliveries, delivery{Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Event: body})
		mu.Unlock()
		if ce.Data.Answer == "HOLD_ONCE" && n == 1 {
			<-r.Context().Done() // until the sidecar goes away
			status = "none"
			return
		}
		if d, err := time.ParseDuration(ce.Data.Sleep); err == nil {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				status = "none"
				return
			}
		}
		switch {
		case ce.Data.Answer == "DROP":
			status = "DROP"
		case ce.Data.Answer == "RETRY_ONCE" && n == 1:
			status = "RETRY"
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"status": status})
	})
	bulk := []bulkDelivery{}
	mux.HandleFunc("POST /bulk/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var env struct {
			Entries []struct {
				EntryID string `json:"entryId"`
				Event   struct {
					ID   string `json:"id"`
					Data struct {
						Answer string `json:"answer"`
					} `json:"data"`
				} `json:"event"`
			} `json:"entries"`
		}
		if err := json.Unmarshal(body, &env); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		type entryStatus struct {
			EntryID string `json:"entryId"`
			Status  string `json:"status"`
		}
		var out struct {
			Statuses []entryStatus `json:"statuses"`
		}
		mu.Lock()
		bulk = append(bulk, bulkDelivery{Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Body: body})
		for _, e := range env.Entries {
			seen[e.Event.ID]++
			first := seen[e.Event.ID] == 1
			st := "SUCCESS"
			switch a := e.Event.Data.Answer; {
			case a == "DROP":
				st = "DROP"
			case a == "RETRY_ONCE" && first:
				st = "RETRY"
			case a == "OMIT_ONCE" && first:
				continue
			}
			out.Statuses = append(out.Statuses, entryStatus{e.EntryID, st})
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("GET /bulk-deliveries", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(bulk)
	})
	mux.HandleFunc("GET /deliveries", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(deliveries)
	})
}
