// Package httpjson holds the one shape of an edgeloop HTTP error, {"error": "<message>"}, on
// both sides: the collector and the retrain controller answer with it, the Open Inference
// Protocol uses the same shape, and every client reads a failed answer's message from it.
package httpjson

import (
	"encoding/json"
	"net/http"
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
