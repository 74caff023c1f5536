package invoke

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ParseMethod validates and normalises the method part of an invocation path,
// given in its escaped form (as it came on the wire, without a leading slash).
// It returns the escaped method path that is both the policy subject and what
// the app receives, so the two can never differ.
//
// Rejected: an empty method; "." and ".." segments, also percent-encoded;
// encoded slashes and backslashes ("%2F", "%5C"), which would let one segment
// pose as two; an encoded "?" or "#"; NUL and other control characters; empty
// inner segments ("a//b"); malformed escapes such as a lone "%".
func ParseMethod(escaped string) (string, error) {
	if escaped == "" {
		return "", errors.New("method is empty: call /v1.0/invoke/<app-id>/method/<method>")
	}
	for rest, first := escaped, true; ; first = false {
		seg, tail, more := strings.Cut(rest, "/")
		if seg == "" {
			if !more && !first {
				return escaped, nil // a trailing slash is the app's business
			}
			return "", fmt.Errorf("method %q has an empty path segment", escaped)
		}
		dec := seg
		if strings.IndexByte(seg, '%') >= 0 {
			var err error
			if dec, err = url.PathUnescape(seg); err != nil {
				return "", fmt.Errorf("method %q has a malformed percent-escape: %w", escaped, err)
			}
		}
		if dec == "." || dec == ".." {
			return "", fmt.Errorf("method %q has a %q segment; relative segments are not allowed", escaped, dec)
		}
		for j := 0; j < len(dec); j++ {
			c := dec[j]
			switch {
			case c < 0x20 || c == 0x7f:
				return "", fmt.Errorf("method %q contains a control character (0x%02x)", escaped, c)
			case c == '/' || c == '\\':
				return "", fmt.Errorf("method %q contains an encoded %q; send path separators unencoded", escaped, c)
			case c == '?' || c == '#':
				return "", fmt.Errorf("method %q contains an encoded %q, which is not allowed in a method path", escaped, c)
			}
		}
		if !more {
			return escaped, nil
		}
		rest = tail
	}
}
