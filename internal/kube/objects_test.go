package kube

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// An object read from the API server is handed on as block YAML that
// reads back to the same values, the strings YAML would take for
// another type included.
func TestJSONToYAML(t *testing.T) {
	in := `{"apiVersion":"dapr.io/v1alpha1","kind":"Component","metadata":{"name":"statestore"},` +
		`"spec":{"type":"state.redis","version":"v1","metadata":[{"name":"redisHost","value":"redis:6379"},` +
		`{"name":"enableTLS","value":"yes"},{"name":"n","value":"0123"},{"name":"empty","value":""},` +
		`{"name":"odd","value":"a: b # c\n\u2028 ünï \"q\" <&>"}],"initTimeout":null,"list":[],"map":{}},` +
		`"scopes":["app1","app2"],"num":1.5e3,"flag":true}`
	out, err := jsonToYAML([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), `{"`) || !strings.Contains(string(out), "\n  type: ") {
		t.Fatalf("not block YAML:\n%s", out)
	}
	var want, got any
	if err := json.Unmarshal([]byte(in), &want); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// yaml.v3 reads 1.5e3 as a float and JSON as float64: compare as JSON.
	wj, _ := json.Marshal(want)
	gj, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(wj, gj) {
		t.Fatalf("read back differs:\nwant %s\ngot  %s\nyaml:\n%s", wj, gj, out)
	}
	if _, err := jsonToYAML([]byte(`{"a":`)); err == nil {
		t.Fatal("truncated JSON accepted")
	}
}
