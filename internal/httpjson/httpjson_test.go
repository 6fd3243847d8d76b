package httpjson

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
)

// TestError checks the answer's status, headers and body, including a message that JSON must
// escape and one that is not valid UTF-8.
func TestError(t *testing.T) {
	for _, tc := range []struct {
		msg, want string
	}{
		{"no such job", "no such job"},
		{`quote " and <tag>`, `quote " and <tag>`},
		{"bad \xff byte", "bad \ufffd byte"},
	} {
		rec := httptest.NewRecorder()
		Error(rec, 409, tc.msg)
		if rec.Code != 409 {
			t.Errorf("%q: status %d", tc.msg, rec.Code)
		}
		if ct, ns := rec.Header().Get("Content-Type"), rec.Header().Get("X-Content-Type-Options"); ct != "application/json" || ns != "nosniff" {
			t.Errorf("%q: headers %q, %q", tc.msg, ct, ns)
		}
		body := rec.Body.String()
		if body[len(body)-1] != '\n' {
			t.Errorf("%q: body %q does not end in a newline", tc.msg, body)
		}
		var got struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Error != tc.want {
			t.Errorf("%q: body %q decodes to %q, %v; want %q", tc.msg, body, got.Error, err, tc.want)
		}
	}
}
