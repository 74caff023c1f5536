package subscribe

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestRoutesMatch: rules are tried in order over the event as daprd decodes
// it (JSON numbers are doubles), the first that holds gives the path, an
// empty match always holds, and a rule that cannot be evaluated for an
// event is an error.
func TestRoutesMatch(t *testing.T) {
	event := `{"id":"1","type":"com.example.order","source":"shop","data":{"count":7,"kind":"widget","tags":["a","b"]}}`
	var ce map[string]any
	if err := json.Unmarshal([]byte(event), &ce); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		rules []Rule
		path  string
		ok    bool
		err   string
	}{
		{"type", []Rule{{`event.type == "com.example.order"`, "/orders"}}, "/orders", true, ""},
		{"first that holds", []Rule{{`event.type == "x"`, "/x"}, {`event.source == "shop"`, "/shop"}, {"", "/default"}}, "/shop", true, ""},
		{"default", []Rule{{`event.type == "x"`, "/x"}, {"", "/default"}}, "/default", true, ""},
		{"none", []Rule{{`event.type == "x"`, "/x"}}, "", false, ""},
		{"no rules", nil, "", false, ""},
		{"number against int", []Rule{{`event.data.count > 5`, "/big"}}, "/big", true, ""},
		{"number equals int", []Rule{{`event.data.count == 7`, "/seven"}}, "/seven", true, ""},
		{"has", []Rule{{`has(event.data.kind) && event.data.kind.startsWith("wid")`, "/w"}}, "/w", true, ""},
		{"has missing", []Rule{{`has(event.data.color)`, "/c"}, {"", "/d"}}, "/d", true, ""},
		{"in list", []Rule{{`"b" in event.data.tags`, "/b"}}, "/b", true, ""},
		{"missing field", []Rule{{`event.data.color == "red"`, "/red"}}, "", false, `no such key: color`},
		{"not a boolean at run time", []Rule{{`event.data.kind`, "/k"}}, "", false, `not a boolean`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := CompileRoutes(c.rules)
			if err != nil {
				t.Fatal(err)
			}
			path, ok, err := r.Match(func() map[string]any { return ce })
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one saying %q", err, c.err)
				}
				return
			}
			if err != nil || path != c.path || ok != c.ok {
				t.Fatalf("Match = %q, %v, %v; want %q, %v", path, ok, err, c.path, c.ok)
			}
		})
	}
}

// TestCompileRoutesRefuses: a rule that does not compile, is not boolean,
// reads a variable other than event, or has a path that is not a URL path
// is refused, naming the rule and why.
func TestCompileRoutesRefuses(t *testing.T) {
	for _, c := range []struct {
		rule Rule
		want string
	}{
		{Rule{`event.type ==`, "/x"}, `rule 1: match "event.type ==" does not compile`},
		{Rule{`event.type == "a"'`, "/x"}, `rule 1: match "event.type == \"a\"'" does not compile`},
		{Rule{`1 + 2`, "/x"}, `rule 1: match "1 + 2" is of type int; it must be a boolean expression`},
		{Rule{`"a"`, "/x"}, `is of type string`},
		{Rule{`evnt.type == "a"`, "/x"}, `undeclared reference to 'evnt'`},
		{Rule{`event.type == "a"`, "/x%zz"}, `rule 1: path "/x%zz" is not a URL path`},
		{Rule{`event.type == "a"`, "/x\ny"}, `rule 1: path "/x\ny" is not a URL path`},
	} {
		t.Run(c.rule.Match+c.rule.Path, func(t *testing.T) {
			_, err := CompileRoutes([]Rule{{`event.type == "ok"`, "/ok"}, c.rule})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("the error spans lines: %q", err)
			}
		})
	}
}
