package invoke

import (
	"fmt"
	"net/http"

	"golang.org/x/net/http/httpguts"
)

// CheckQuery reports whether q can go on the wire as the query of a call:
// no control characters, spaces or "#" (percent-encode them). It is checked
// before the hop, so that a peer never resets the call as malformed.
func CheckQuery(q string) error {
	for i := 0; i < len(q); i++ {
		switch c := q[i]; {
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("query string %q has a control character (0x%02x) at byte %d; percent-encode it", q, c, i)
		case c == ' ':
			return fmt.Errorf("query string %q has a space at byte %d; percent-encode it as %%20", q, i)
		case c == '#':
			return fmt.Errorf("query string %q has a %q at byte %d; percent-encode it as %%23", q, c, i)
		}
	}
	return nil
}

// CheckHeader reports whether every name and value of h can go on the wire
// as an HTTP/2 header field: names are tokens, values have no control
// characters but tab. what names them in the error ("header", "metadata").
func CheckHeader(h http.Header, what string) error {
	for k, vv := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("%s name %q is not a valid field name (letters, digits and !#$%%&'*+-.^_`|~ only)", what, k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("%s %q has a value with a control character; encode it (binary gRPC metadata goes under a name ending in -bin)", what, k)
			}
		}
	}
	return nil
}

// checkVerb reports whether verb is an HTTP method token.
func checkVerb(verb string) error {
	if verb == "" || !httpguts.ValidHeaderFieldName(verb) {
		return fmt.Errorf("HTTP verb %q is not a valid method", verb)
	}
	return nil
}
