package httpapi

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

var jsonSeeds = []string{
	`1`, `-0.5e+7`, `01`, `-`, `1.`, `1e`, `.5`, `"a\u00e9\n"`, `"\x"`, `"\u12g4"`, "\"\x01\"", `"é"`,
	`true`, `tru`, `nul`, `null `, ` [1, {"a": [true, false, null]}, "x"] `, `[1,]`, `{"a":1,}`, `{"a" 1}`, `{1:2}`,
	`[]`, `{}`, `[1 2]`, `{"a":1}{}`, "\xff", `"` + "\xff" + `"`,
	strings.Repeat("[", 300) + strings.Repeat("]", 300), strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat("[", 300) + strings.Repeat("]", 299),
}

var saveSeeds = []string{
	`[{"key":"k","value":"v"}]`, `[]`, ` [ ] `, `null`, `[{}]`, `{"key":"k"}`,
	`[{"key":"k","value":{"a":[1,2.5,"x"]},"etag":"3","metadata":{"ttlInSeconds":"60","contentType":"application/json"},"options":{"concurrency":"first-write","consistency":"strong"}}]`,
	`[{"key":"k","value":1,"etag":null,"metadata":null,"options":null}]`, `[{"key":"k","value":null}]`,
	`[{"key":"k","value":1,"metadata":{},"options":{}}]`, `[{"Key":"k","value":1}]`, `[{"key":"k","key":"j","value":1}]`,
	`[{"key":"k\n","value":1}]`, `[{"key":"k","value":1,"metadata":{"a":"1","a":"2"}}]`, `[{"key":"k","value":1,"other":2}]`,
	`[{"key":1,"value":1}]`, `[{"key":"k","value":1}] x`, `[{"key":"k","value":1},{"key":"j","value":[]}]`,
	`[{"key":"k","value":1,"options":{"concurrency":"first-write","x":1}}]`, `[{"key":"k","value":1,"metadata":{"a":1}}]`,
	`[{"key":"é","value":"\u00e9"}]`, `[{"key":"k","value":1,}]`, `[{"key":"k","value":1},]`, `[{"key":"k","value":01}]`,
}

// FuzzValidJSON holds validJSON to json.Valid's answer.
func FuzzValidJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid %v", b, got, want)
		}
	})
}

// FuzzSaveItems holds decodeSaveItems to json.Unmarshal's answer: what it
// decodes, json.Unmarshal decodes without error to the same items. Bodies
// reach it valid UTF-8 (the handler checks it first).
func FuzzSaveItems(f *testing.F) {
	for _, s := range append(saveSeeds, jsonSeeds...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !utf8.Valid(b) {
			return
		}
		fast, ok := decodeSaveItems(b)
		if !ok {
			return
		}
		var slow []saveItem
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatalf("%q: decoded as %+v, json.Unmarshal: %v", b, fast, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: decoded as %#v, json.Unmarshal as %#v", b, fast, slow)
		}
	})
}

// The plain forms clients send take the one-pass decoder; the rest goes to
// encoding/json.
func TestSaveItemsFastPath(t *testing.T) {
	for _, s := range []string{
		`[{"key":"k","value":"v"}]`, `[]`, " [\n{ \"key\" : \"k\" , \"value\" : { \"a\" : [ 1 ] } } ]\n",
		`[{"key":"k","value":{"a":[1,2.5,"x"]},"etag":"3","metadata":{"ttlInSeconds":"60"},"options":{"concurrency":"first-write","consistency":"strong"}}]`,
		`[{"key":"k","value":null,"etag":null,"metadata":null,"options":null}]`, `[{"key":"k","value":"\"quoted\" \u00e9"}]`,
	} {
		if _, ok := decodeSaveItems([]byte(s)); !ok {
			t.Errorf("%s: not decoded in one pass", s)
		}
	}
	for _, s := range []string{
		`null`, `[{"Key":"k","value":1}]`, `[{"key":"k","key":"j","value":1}]`, `[{"key":"k\n","value":1}]`,
		`[{"key":"k","value":1,"other":2}]`, `[{"key":1,"value":1}]`, `[{"key":"k","value":1}] x`, `[{"key":"k","value":01}]`,
		`[{"key":"k","value":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}]`,
	} {
		if _, ok := decodeSaveItems([]byte(s)); ok {
			t.Errorf("%s: decoded in one pass, want it left to encoding/json", s)
		}
	}
}
