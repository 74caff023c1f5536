package httpapi

import (
	"log/slog"
	"net/http"
	"time"
)

// Logged logs every call of the route named name as it ends
// (--enable-api-logging), as daprd does ("HTTP API Called"): the method and
// path, the route's name, the status, the bytes of the answer, the
// duration in milliseconds and the user agent. The health routes are not
// logged, as daprd leaves out health checks.
func Logged(log *slog.Logger, name string, h http.Handler) http.Handler {
	if name == "Healthz" || name == "HealthzOutbound" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		attrs := []any{"method", r.Method + " " + r.URL.Path, "route", name, "code", rec.status, "size", rec.size,
			"duration", time.Since(start).Milliseconds()}
		if ua := r.UserAgent(); ua != "" {
			attrs = append(attrs, "useragent", ua)
		}
		log.Info("HTTP API Called", attrs...)
	})
}

// recorder notes the status and size of an answer. http.ResponseController
// reaches the writer underneath through Unwrap (flushes of streamed
// answers, deadlines).
type recorder struct {
	http.ResponseWriter
	status int
	size   int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.size += int64(n)
	return n, err
}

// Flush flushes the writer underneath, for code that asserts http.Flusher.
func (r *recorder) Flush() { _ = http.NewResponseController(r.ResponseWriter).Flush() }

// Unwrap returns the writer underneath.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
