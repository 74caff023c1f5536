// Package operator is the arithmetic of the calculator's operator services:
// one HTTP handler per operation, taking {"operandOne":"52","operandTwo":"34"}
// and answering the result as a JSON number.
package operator

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// Ops are the operations, by name.
var Ops = map[string]func(a, b float64) (float64, error){
	"add":      func(a, b float64) (float64, error) { return a + b, nil },
	"subtract": func(a, b float64) (float64, error) { return a - b, nil },
	"multiply": func(a, b float64) (float64, error) { return a * b, nil },
	"divide": func(a, b float64) (float64, error) {
		if b == 0 {
			return 0, fmt.Errorf("cannot divide by zero")
		}
		return a / b, nil
	},
}

// Operands is the request body; operands come as JSON strings, as in the
// Dapr sample (numbers are accepted too).
type Operands struct {
	OperandOne json.RawMessage `json:"operandOne"`
	OperandTwo json.RawMessage `json:"operandTwo"`
}

// Handler serves POST requests for the operation op.
func Handler(op string) http.Handler {
	f := Ops[op]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "use POST with {\"operandOne\":\"52\",\"operandTwo\":\"34\"}", http.StatusMethodNotAllowed)
			return
		}
		var in Operands
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err == nil {
			err = json.Unmarshal(body, &in)
		}
		if err != nil {
			http.Error(w, "the body must be JSON like {\"operandOne\":\"52\",\"operandTwo\":\"34\"}: "+err.Error(), http.StatusBadRequest)
			return
		}
		a, err := operand("operandOne", in.OperandOne)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b, err := operand("operandTwo", in.OperandTwo)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		res, err := f(a, b)
		if err == nil && (math.IsInf(res, 0) || math.IsNaN(res)) {
			err = fmt.Errorf("the result is out of range")
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		out, _ := json.Marshal(res)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
}

// operand parses one operand: a JSON string holding a number, or a number.
func operand(name string, raw json.RawMessage) (float64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, fmt.Errorf("%s is missing", name)
	}
	s := string(raw)
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf("%s is not a valid string: %v", name, err)
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%s %s is not a number", name, raw)
	}
	return v, nil
}
