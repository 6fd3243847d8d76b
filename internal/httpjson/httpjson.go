// Package httpjson holds the one shape of an edgeloop HTTP error, {"error": "<message>"}, on
// both sides: the collector and the retrain controller answer with it, the Open Inference
// Protocol uses the same shape, and every client reads a failed answer's message from it.
package httpjson

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Error writes a JSON error answer: status code, {"error": msg} and a newline. The nosniff
// header keeps a browser from reading a message that quotes a request as HTML.
func Error(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	b, _ := json.Marshal(map[string]string{"error": msg}) // a map of strings always encodes
	w.Write(append(b, '\n'))
}

// MaxMessageBytes bounds what Message quotes of a body that is not an error answer.
const MaxMessageBytes = 200

// Message returns the message of a failed answer's body: the "error" of {"error": "..."}, or,
// for a body that is not one (a proxy's HTML page, say), the body itself with surrounding white
// space trimmed and cut after MaxMessageBytes, without splitting a UTF-8 character, and "..."
// appended, so that an unbounded or binary body does not end up whole in an error or a log line.
// An empty body gives "".
func Message(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > MaxMessageBytes {
		// ToValidUTF8 drops the character the cut split, along with any invalid bytes before it.
		msg = strings.ToValidUTF8(msg[:MaxMessageBytes], "") + "..."
	}
	return msg
}
