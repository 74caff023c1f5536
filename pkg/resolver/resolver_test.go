package resolver

import (
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	ok := map[string]Target{
		"addapp":         {ID: "addapp"},
		"add-app-2":      {ID: "add-app-2"},
		"addapp.default": {ID: "addapp", Namespace: "default"},
		"a.b-c":          {ID: "a", Namespace: "b-c"},
	}
	for in, want := range ok {
		got, err := ParseTarget(in)
		if err != nil || got != want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if got.String() != in {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), in)
		}
	}
	bad := map[string]string{
		"":                      "empty",
		"AddApp":                "DNS-1123",
		"add_app":               "DNS-1123",
		"-add":                  "DNS-1123",
		"add-":                  "DNS-1123",
		"add.":                  "", // empty namespace is just the id
		"add.Prod":              "namespace",
		"a.b.c":                 "namespace",
		strings.Repeat("a", 59): "at most 58",
	}
	for in, want := range bad {
		_, err := ParseTarget(in)
		if in == "add." {
			if err != nil {
				t.Errorf("ParseTarget(%q): %v", in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseTarget(%q) error %v, want one saying %q", in, err, want)
		}
	}
}
