package httpjson

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
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

// TestMessage checks the message read from error answers and from bodies that are not one.
func TestMessage(t *testing.T) {
	long := strings.Repeat("é", 150) // 2 bytes each: after a leading "x" the cut at 200 splits one
	for _, tc := range []struct{ name, body, want string }{
		{"error answer", `{"error":"node mismatch"}`, "node mismatch"},
		{"error answer with other fields", `{"error":"busy","retry":3}`, "busy"},
		{"empty error", `{"error":""}`, `{"error":""}`},
		{"HTML page", "<html>Bad Gateway</html>\n", "<html>Bad Gateway</html>"},
		{"long body", strings.Repeat("x", 300), strings.Repeat("x", 200) + "..."},
		{"long body cut inside a character", "x" + long, "x" + strings.Repeat("é", 99) + "..."},
		{"long error kept whole", `{"error":"` + strings.Repeat("y", 300) + `"}`, strings.Repeat("y", 300)},
		{"empty", "", ""},
		{"white space", " \n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Message([]byte(tc.body))
			if got != tc.want {
				t.Errorf("Message(%.30q) = %.40q, want %.40q", tc.body, got, tc.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("Message(%.30q) is not valid UTF-8", tc.body)
			}
		})
	}
}
