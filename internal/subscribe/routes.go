package subscribe

import (
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
)

// Rule is one routing rule of a subscription: events for which Match holds
// go to Path. Match is a CEL expression over the event (event.type,
// event.data.<field>, ...) as Dapr evaluates it; an empty Match always
// holds (the default route, or a subscription's single route).
type Rule struct {
	Match string
	Path  string
}

// Routes are a subscription's rules, compiled: the first whose match holds
// gives an event's route. It is safe for concurrent use.
type Routes struct {
	rules []route
}

type route struct {
	Rule
	prg cel.Program // nil: always holds
}

// celEnv declares the one variable a match may read: the event, any type,
// as daprd gives it ({"event": the CloudEvent as a JSON object}). It is
// made the first time a match is compiled, not at start: a sidecar whose
// subscriptions have no match never needs it (making it allocates 20 KB
// in 149 objects and runs CEL's declarations).
var celEnv = sync.OnceValue(func() *cel.Env {
	env, err := cel.NewEnv(cel.Variable("event", cel.DynType))
	if err != nil {
		panic(err) // a constant declaration
	}
	return env
})

// CompileRoutes compiles rules. A match that does not compile, or that is
// not a boolean expression, is an error naming the rule (by its index from
// 0) and saying why; so is a path that is not a URL path.
//
// Unlike daprd, which declares any name a match mentions and fails when it
// evaluates one but event, a match that reads another variable does not
// compile: it could never route an event.
func CompileRoutes(rules []Rule) (*Routes, error) {
	r := &Routes{rules: make([]route, len(rules))}
	for i, rule := range rules {
		if err := checkPath(rule.Path); err != nil {
			return nil, fmt.Errorf("rule %d: %w", i, err)
		}
		r.rules[i].Rule = rule
		m := strings.TrimSpace(rule.Match)
		if m == "" {
			continue
		}
		ast, iss := celEnv().Compile(m)
		if iss.Err() != nil {
			return nil, fmt.Errorf("rule %d: match %q does not compile: %s", i, rule.Match, oneLine(iss.Err().Error()))
		}
		if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
			return nil, fmt.Errorf("rule %d: match %q is of type %s; it must be a boolean expression", i, rule.Match, t)
		}
		prg, err := celEnv().Program(ast, cel.EvalOptions(cel.OptOptimize))
		if err != nil {
			return nil, fmt.Errorf("rule %d: match %q: %w", i, rule.Match, err)
		}
		r.rules[i].prg = prg
	}
	return r, nil
}

// checkPath accepts a route: empty (gRPC apps' default) or what routeURL
// reads.
func checkPath(p string) error {
	if p == "" {
		return nil
	}
	_, err := routeURL(p)
	return err
}

// appHost is the host of the URLs of deliveries; the app channel sends
// them to the app's address.
const appHost = "app"

// routeURL is the URL an HTTP delivery to path p is posted to: the path
// (a leading slash added when missing) and query, on the app, as daprd
// builds it.
func routeURL(p string) (*url.URL, error) {
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	u, err := url.Parse("http://" + appHost + p)
	if err != nil || u.Host != appHost {
		return nil, fmt.Errorf("path %q is not a URL path such as /orders", p)
	}
	return u, nil
}

// oneLine keeps CEL's message (which draws the expression and a caret
// under the error) on one line, for logs.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Match returns the path of the first rule whose match holds for the
// CloudEvent that ce returns (called only when a rule has a match to
// evaluate, once); ok is false when none does. A match that cannot be
// evaluated for this event (a field it reads is missing, of another type)
// or that gives no boolean is an error, as in daprd.
func (r *Routes) Match(ce func() map[string]any) (path string, ok bool, err error) {
	var vars map[string]any
	for i, rule := range r.rules {
		if rule.prg == nil {
			return rule.Path, true, nil
		}
		if vars == nil {
			vars = map[string]any{"event": ce()}
		}
		out, _, err := rule.prg.Eval(vars)
		if err != nil {
			return "", false, fmt.Errorf("rule %d: match %q: %w", i, rule.Match, err)
		}
		b, isBool := out.Value().(bool)
		if !isBool {
			return "", false, fmt.Errorf("rule %d: match %q gave %v, not a boolean", i, rule.Match, out.Value())
		}
		if b {
			return rule.Path, true, nil
		}
	}
	return "", false, nil
}
