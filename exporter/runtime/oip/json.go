package oip

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// parser is a small validating JSON reader for the protocol's request and response objects.
// encoding/json scans a body twice (validation, then decoding) at about 150 MB/s, which for
// an image as JSON numbers cost three times the model's own run; this reader validates in one
// pass and leaves each tensor's data as a byte span for the number scanner.
type parser struct {
	b []byte
	i int
}

// syntaxError is malformed JSON at an offset.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("offset %d: %s", e.off, e.msg) }

func (p *parser) fail(msg string) error {
	if p.i >= len(p.b) {
		return &syntaxError{off: len(p.b), msg: "unexpected end of input"}
	}
	return &syntaxError{off: p.i, msg: msg}
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (p *parser) peek() byte {
	p.ws()
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *parser) consume(c byte) bool {
	if p.peek() == c {
		p.i++
		return true
	}
	return false
}

// end checks that only white space follows the top-level value.
func (p *parser) end() error {
	if p.ws(); p.i != len(p.b) {
		return p.fail("unexpected data after the top-level value")
	}
	return nil
}

// object calls field for each member of the object at the current position; field must
// consume the value.
func (p *parser) object(what string, field func(key string) error) error {
	if !p.consume('{') {
		return p.typeError(what, "an object")
	}
	if p.consume('}') {
		return nil
	}
	for {
		if p.peek() != '"' {
			return p.fail("expected a string key")
		}
		key, err := p.str()
		if err != nil {
			return err
		}
		if !p.consume(':') {
			return p.fail("expected ':' after a key")
		}
		if err := field(key); err != nil {
			return err
		}
		if p.consume(',') {
			continue
		}
		if p.consume('}') {
			return nil
		}
		return p.fail("expected ',' or '}' in an object")
	}
}

// array calls elem for each element of the array at the current position.
func (p *parser) array(what string, elem func(i int) error) error {
	if !p.consume('[') {
		return p.typeError(what, "an array")
	}
	if p.consume(']') {
		return nil
	}
	for i := 0; ; i++ {
		if err := elem(i); err != nil {
			return err
		}
		if p.consume(',') {
			continue
		}
		if p.consume(']') {
			return nil
		}
		return p.fail("expected ',' or ']' in an array")
	}
}

// typeError reports a value of the wrong JSON type, or malformed JSON if it is not a value.
func (p *parser) typeError(what, want string) error {
	start := p.i
	if err := p.skip(); err != nil {
		return err
	}
	return fmt.Errorf("%s must be %s, got %s", what, want, kindOf(p.b[start]))
}

func kindOf(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// str parses the string at the current position.
func (p *parser) str() (string, error) {
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return "", p.fail("expected a string")
	}
	start := p.i
	escaped := false
	for p.i++; p.i < len(p.b); p.i++ {
		switch c := p.b[p.i]; {
		case c == '"':
			p.i++
			if !escaped {
				return string(p.b[start+1 : p.i-1]), nil
			}
			var s string // escapes are rare in names and ids: let encoding/json undo them
			if err := json.Unmarshal(p.b[start:p.i], &s); err != nil {
				return "", &syntaxError{off: start, msg: "malformed string"}
			}
			return s, nil
		case c == '\\':
			escaped = true
			p.i++ // the escaped byte; \uXXXX is checked by encoding/json above
		case c < 0x20:
			return "", p.fail("control character in a string")
		}
	}
	return "", p.fail("unterminated string")
}

// stringValue parses a string member, refusing other types.
func (p *parser) stringValue(what string) (string, error) {
	if p.peek() != '"' {
		return "", p.typeError(what, "a string")
	}
	return p.str()
}

// skip moves past one value of any type, checking its syntax.
func (p *parser) skip() error {
	switch c := p.peek(); {
	case c == '{':
		return p.object("", func(string) error { return p.skip() })
	case c == '[':
		return p.array("", func(int) error { return p.skip() })
	case c == '"':
		_, err := p.str()
		return err
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		n := skipNumber(p.b[p.i:])
		if n == 0 {
			return &syntaxError{off: p.i, msg: "malformed number"}
		}
		p.i += n
		return nil
	}
	return p.fail("expected a value")
}

// skipNumber returns the length of the JSON number at the start of b, or 0 if there is none.
// It checks the grammar only: the values are parsed once, later, by parseNumber.
func skipNumber(b []byte) int {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i - start
	}
	switch n := digits(); {
	case n == 0, n > 1 && b[i-n] == '0':
		return 0
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return 0
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return 0
		}
	}
	return i
}

func (p *parser) literal(word string) error {
	if len(p.b)-p.i < len(word) || string(p.b[p.i:p.i+len(word)]) != word {
		return p.fail("invalid literal")
	}
	p.i += len(word)
	return nil
}

// raw skips one value and returns its bytes.
func (p *parser) raw() ([]byte, error) {
	p.ws()
	start := p.i
	if err := p.skip(); err != nil {
		return nil, err
	}
	return p.b[start:p.i], nil
}

// ints parses an array of integers (a shape).
func (p *parser) ints(what string) ([]int64, error) {
	out := []int64{} // non-nil: an empty shape is a scalar, a missing one is nil
	err := p.array(what, func(int) error {
		p.ws()
		start := p.i
		if err := p.skip(); err != nil {
			return err
		}
		n, err := strconv.ParseInt(string(p.b[start:p.i]), 10, 64)
		if err != nil {
			return fmt.Errorf("%s must hold integers, got %s", what, p.b[start:p.i])
		}
		out = append(out, n)
		return nil
	})
	return out, err
}

// params parses a parameters object into raw values by name.
func (p *parser) params(what string) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	err := p.object(what, func(key string) error {
		v, err := p.raw()
		out[key] = v
		return err
	})
	return out, err
}

// wireTensor is an input of a request or an output of a response, as sent.
type wireTensor struct {
	Name       string
	Shape      []int64
	Datatype   string
	Parameters map[string]json.RawMessage
	Data       []byte // the raw JSON value; nil when absent
}

// tensor parses one tensor object; unknown members are skipped.
func (p *parser) tensor(what string) (wireTensor, error) {
	var t wireTensor
	err := p.object(what, func(key string) error {
		var err error
		switch key {
		case "name":
			t.Name, err = p.stringValue(what + ".name")
		case "shape":
			t.Shape, err = p.ints(what + ".shape")
		case "datatype":
			t.Datatype, err = p.stringValue(what + ".datatype")
		case "parameters":
			t.Parameters, err = p.params(what + ".parameters")
		case "data":
			t.Data, err = p.raw()
		default:
			err = p.skip()
		}
		return err
	})
	return t, err
}

// wireMessage is a request or a response, as sent.
type wireMessage struct {
	ID         *string
	Parameters map[string]json.RawMessage
	Inputs     []wireTensor // requests
	Outputs    []wireTensor // responses: tensors; requests: name and parameters only
}

// parseMessage parses an inference request or response body.
func parseMessage(data []byte) (*wireMessage, error) {
	p := &parser{b: data}
	var m wireMessage
	err := p.object("the body", func(key string) error {
		switch key {
		case "id":
			id, err := p.stringValue("id")
			m.ID = &id
			return err
		case "parameters":
			var err error
			m.Parameters, err = p.params("parameters")
			return err
		case "inputs":
			return p.array("inputs", func(i int) error {
				t, err := p.tensor(fmt.Sprintf("inputs[%d]", i))
				m.Inputs = append(m.Inputs, t)
				return err
			})
		case "outputs":
			return p.array("outputs", func(i int) error {
				t, err := p.tensor(fmt.Sprintf("outputs[%d]", i))
				m.Outputs = append(m.Outputs, t)
				return err
			})
		}
		return p.skip()
	})
	if err == nil {
		err = p.end()
	}
	var se *syntaxError
	if errors.As(err, &se) {
		return nil, fmt.Errorf("malformed JSON: %w", err)
	}
	return &m, err
}
