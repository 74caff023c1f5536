package httpapi

import "encoding/json"

// The state API reads and checks JSON on every save and every get: a save's
// body is an array of items whose values are kept as the client sent them,
// and a get answers application/json when the stored value is JSON.
// encoding/json reads a body twice (once to check it, once to decode it)
// with a state machine called for every byte, which is most of a save's
// decoding time for a value of 1 KB. This file reads the plain form that
// clients send in one pass, and leaves everything else to encoding/json:
// what it accepts decodes exactly as json.Unmarshal decodes it, and what it
// does not (another shape, a field spelled in other case, an escape in a
// key, bad JSON) goes to json.Unmarshal, which decodes it or tells what is
// wrong as before. FuzzSaveItems and FuzzValidJSON hold the two to the
// same answers.

// maxFastDepth is how deeply nested a value validJSON checks itself;
// deeper, json.Valid decides, with its own limit.
const maxFastDepth = 200

// validJSON reports whether b is one JSON value, as json.Valid does.
func validJSON(b []byte) bool {
	s := jsonScan{b: b}
	s.ws()
	ok := s.value(0)
	if s.deep {
		return json.Valid(b)
	}
	s.ws()
	return ok && s.i == len(b)
}

// jsonScan reads JSON from b at i.
type jsonScan struct {
	b    []byte
	i    int
	deep bool // nested past maxFastDepth: not decided here
}

func (s *jsonScan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next is the byte at i, or 0 at the end.
func (s *jsonScan) next() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// value reads one value at i (no whitespace before it).
func (s *jsonScan) value(depth int) bool {
	switch c := s.next(); {
	case c == '"':
		return s.str()
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return false
}

func (s *jsonScan) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// str reads a string at i, its opening quote included. Any byte from 0x20
// up may stand for itself, as encoding/json's scanner has it.
func (s *jsonScan) str() bool {
	s.i++
	for s.i < len(s.b) {
		c := s.b[s.i]
		s.i++
		switch {
		case c == '"':
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if s.i >= len(s.b) {
				return false
			}
			e := s.b[s.i]
			s.i++
			switch e {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(s.b)-s.i < 4 {
					return false
				}
				for _, h := range s.b[s.i : s.i+4] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return false
					}
				}
				s.i += 4
			default:
				return false
			}
		}
	}
	return false
}

func (s *jsonScan) digits() int {
	n := 0
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
		n++
	}
	return n
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *jsonScan) number() bool {
	if s.next() == '-' {
		s.i++
	}
	switch c := s.next(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return false
	}
	if s.next() == '.' {
		s.i++
		if s.digits() == 0 {
			return false
		}
	}
	if c := s.next(); c == 'e' || c == 'E' {
		s.i++
		if c := s.next(); c == '+' || c == '-' {
			s.i++
		}
		if s.digits() == 0 {
			return false
		}
	}
	return true
}

func (s *jsonScan) object(depth int) bool {
	if depth > maxFastDepth {
		s.deep = true
		return false
	}
	s.i++ // {
	s.ws()
	if s.next() == '}' {
		s.i++
		return true
	}
	for {
		if s.next() != '"' || !s.str() {
			return false
		}
		s.ws()
		if s.next() != ':' {
			return false
		}
		s.i++
		s.ws()
		if !s.value(depth) {
			return false
		}
		s.ws()
		switch s.next() {
		case ',':
			s.i++
			s.ws()
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

func (s *jsonScan) array(depth int) bool {
	if depth > maxFastDepth {
		s.deep = true
		return false
	}
	s.i++ // [
	s.ws()
	if s.next() == ']' {
		s.i++
		return true
	}
	for {
		if !s.value(depth) {
			return false
		}
		s.ws()
		switch s.next() {
		case ',':
			s.i++
			s.ws()
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// plainString reads a string at i with no escape in it, and returns its
// text; false when there is none there (or it has an escape).
func (s *jsonScan) plainString() (string, bool) {
	if s.next() != '"' {
		return "", false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return string(s.b[start:j]), true
		case c == '\\' || c < 0x20:
			return "", false
		}
	}
	return "", false
}

// null reads null at i, if it is there.
func (s *jsonScan) null() bool {
	if s.next() == 'n' {
		return s.literal("null")
	}
	return false
}

// members reads the members of an object at i whose names have no escape,
// calling member with each name once i is at its value; false when it is
// not such an object or member returns false.
func (s *jsonScan) members(member func(name string) bool) bool {
	if s.next() != '{' {
		return false
	}
	s.i++
	s.ws()
	if s.next() == '}' {
		s.i++
		return true
	}
	for {
		name, ok := s.plainString()
		if !ok {
			return false
		}
		s.ws()
		if s.next() != ':' {
			return false
		}
		s.i++
		s.ws()
		if !member(name) {
			return false
		}
		s.ws()
		switch s.next() {
		case ',':
			s.i++
			s.ws()
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// decodeSaveItems decodes a save's body as json.Unmarshal decodes it into
// []saveItem, when it is an array of objects whose members are named
// exactly as saveItem's fields, each once, with strings free of escapes
// for key, etag, metadata and options; ok is false for anything else,
// which the caller hands to encoding/json. Values are slices of b.
func decodeSaveItems(b []byte) (items []saveItem, ok bool) {
	s := jsonScan{b: b}
	s.ws()
	if s.next() != '[' {
		return nil, false
	}
	s.i++
	s.ws()
	items = []saveItem{}
	if s.next() == ']' {
		s.i++
	} else {
		for {
			var it saveItem
			if !s.saveItem(&it) {
				return nil, false
			}
			items = append(items, it)
			s.ws()
			if s.next() == ',' {
				s.i++
				s.ws()
				continue
			}
			if s.next() != ']' {
				return nil, false
			}
			s.i++
			break
		}
	}
	s.ws()
	return items, s.i == len(b)
}

func (s *jsonScan) saveItem(it *saveItem) bool {
	var seen [5]bool
	once := func(f int) bool {
		if seen[f] {
			return false
		}
		seen[f] = true
		return true
	}
	return s.members(func(name string) bool {
		switch name {
		case "key":
			var ok bool
			it.Key, ok = s.plainString()
			return once(0) && ok
		case "value":
			start := s.i
			if !once(1) || !s.value(0) {
				return false
			}
			it.Value = json.RawMessage(s.b[start:s.i:s.i])
			return true
		case "etag":
			if !once(2) {
				return false
			}
			if s.null() {
				return true
			}
			e, ok := s.plainString()
			it.ETag = &e
			return ok
		case "metadata":
			if !once(3) {
				return false
			}
			if s.null() {
				return true
			}
			it.Metadata = map[string]string{}
			return s.members(func(k string) bool {
				if _, dup := it.Metadata[k]; dup {
					return false
				}
				v, ok := s.plainString()
				it.Metadata[k] = v
				return ok
			})
		case "options":
			if !once(4) {
				return false
			}
			if s.null() {
				return true
			}
			it.Options = &saveOptions{}
			var seenOpt [2]bool
			return s.members(func(k string) bool {
				var dst *string
				switch k {
				case "concurrency":
					if seenOpt[0] {
						return false
					}
					seenOpt[0], dst = true, &it.Options.Concurrency
				case "consistency":
					if seenOpt[1] {
						return false
					}
					seenOpt[1], dst = true, &it.Options.Consistency
				default:
					return false
				}
				var ok bool
				*dst, ok = s.plainString()
				return ok
			})
		}
		return false
	})
}
