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

func TestRotate(t *testing.T) {
	abc := []string{"a", "b", "c"}
	for _, c := range []struct {
		addrs []string
		n     uint32
		want  string
	}{
		{nil, 5, ""},
		{[]string{"a"}, 7, "a"},
		{abc, 0, "a b c"},
		{abc, 1, "b c a"},
		{abc, 2, "c a b"},
		{abc, 3, "a b c"},
		{abc, 1<<32 - 1, "a b c"}, // 4294967295 % 3 == 0: no overflow at the top
	} {
		if got := strings.Join(Rotate(c.addrs, c.n), " "); got != c.want {
			t.Errorf("Rotate(%q, %d) = %q, want %q", c.addrs, c.n, got, c.want)
		}
	}
	if strings.Join(abc, " ") != "a b c" {
		t.Errorf("Rotate changed its input: %q", abc)
	}
}
