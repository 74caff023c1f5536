package invoke

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzParseMethod: whatever the path, ParseMethod never panics, and what it
// accepts is the path as given, holds no relative segment, no encoded
// separator and no control character once decoded, so the method a policy
// sees is the one the app gets.
func FuzzParseMethod(f *testing.F) {
	for _, s := range []string{"add", "a/b/c", "a/", "%", "a%2Fb", "..", "a/../b", "%2e%2e", "a//b", "a%00b", "x?y", "a%3Fb", "%E2%82%AC", "a\\b", "", "admin%2F..%2Fpublic", "x/y/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMethod(s)
		if err != nil {
			return
		}
		if m != s {
			t.Fatalf("ParseMethod(%q) = %q", s, m)
		}
		for seg := range strings.SplitSeq(strings.TrimSuffix(m, "/"), "/") {
			dec, err := url.PathUnescape(seg)
			if err != nil {
				t.Fatalf("accepted %q with a bad escape in %q", s, seg)
			}
			if dec == "" || dec == "." || dec == ".." || strings.ContainsAny(dec, "/\\?#") {
				t.Fatalf("accepted %q with segment %q", s, dec)
			}
			for _, c := range []byte(dec) {
				if c < 0x20 || c == 0x7f {
					t.Fatalf("accepted %q with a control character", s)
				}
			}
		}
		if again, err := ParseMethod(m); err != nil || again != m {
			t.Fatalf("not idempotent: %q -> %q, %v", m, again, err)
		}
		if _, err := methodURL("http", "127.0.0.1:1", m, ""); err != nil {
			t.Fatalf("accepted %q but cannot build its URL: %v", s, err)
		}
	})
}
