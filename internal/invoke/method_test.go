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
