package httpapi

import (
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/tandem-run/tandem/internal/apierr"
)

// LimitHeaders answers 431 to a request whose header list is over max
// bytes, counted as HTTP/2 counts it (name, value and 32 bytes a field), the
// same measure as the gRPC API's and the internal hop's, so that whatever
// the API accepts fits through the hop. The server's MaxHeaderBytes (the
// header block as text, never larger by this count) bounds what is read.
func LimitHeaders(max int, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		for k, vv := range r.Header {
			for _, v := range vv {
				n += len(k) + len(v) + 32
			}
		}
		if n > max {
			apierr.Write(w, apierr.New(apierr.CodeMalformedRequest, http.StatusRequestHeaderFieldsTooLarge, codes.ResourceExhausted,
				"the request's headers are %d bytes, over the sidecar's limit of %d (--read-buffer-size)", n, max))
			return
		}
		next.ServeHTTP(w, r)
	})
}
