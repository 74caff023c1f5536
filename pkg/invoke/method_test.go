package invoke

import (
	"strings"
	"testing"
)

func TestParseMethod(t *testing.T) {
	ok := []string{"add", "a/b/c", "a/b%20c", "v1/items/", "caf%C3%A9", "a:b@c", "x-y_z~"}
	for _, m := range ok {
		got, err := ParseMethod(m)
		if err != nil || got != m {
			t.Errorf("ParseMethod(%q) = %q, %v; want it unchanged", m, got, err)
		}
	}
	bad := map[string]string{
		"":                    "empty",
		"/add":                "empty path segment",
		"a//b":                "empty path segment",
		"..":                  `".."`,
		"a/../admin":          `".."`,
		"a/./b":               `"."`,
		"a/%2e%2E/b":          `".."`,
		"admin%2F..%2Fpublic": "encoded",
		"a%5cb":               "encoded",
		"a%3Fb":               "encoded '?'",
		"a%23b":               "encoded '#'",
		"a%00b":               "control",
		"a%0Ab":               "control",
		"a%7f":                "control",
		"a%":                  "percent-escape",
		"a%zz":                "percent-escape",
	}
	for m, want := range bad {
		_, err := ParseMethod(m)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseMethod(%q) error %v, want one saying %q", m, err, want)
		}
	}
}

func FuzzParseMethod(f *testing.F) {
	for _, s := range []string{"add", "a/../b", "admin%2F..%2Fpublic", "%", "a%00", "x/y/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMethod(s)
		if err != nil {
			return
		}
		// Whatever passes has no relative or empty inner segments and
		// stays the same when parsed again.
		for i, seg := range strings.Split(m, "/") {
			if seg == "." || seg == ".." || (seg == "" && i < len(strings.Split(m, "/"))-1) {
				t.Fatalf("ParseMethod(%q) let %q through", s, m)
			}
		}
		if again, err := ParseMethod(m); err != nil || again != m {
			t.Fatalf("not idempotent: %q -> %q, %v", m, again, err)
		}
	})
}
