package resolver

import (
	"strings"
	"testing"
)

// FuzzParseTarget: app ids are DNS labels; anything accepted is one, with at
// most a namespace after a dot, and never panics.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"addapp", "addapp.prod", "a.b.c", "", ".", "A", "a-", strings.Repeat("a", 70), "a..b", "a/b", "ä"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseTarget(s)
		if err != nil {
			return
		}
		if ValidateID(tg.ID) != nil {
			t.Fatalf("ParseTarget(%q) accepted id %q", s, tg.ID)
		}
		if strings.ContainsAny(tg.ID+tg.Namespace, "/ %\x00") {
			t.Fatalf("ParseTarget(%q) = %+v", s, tg)
		}
	})
}
