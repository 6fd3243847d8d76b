package tokenurl

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name         string
		url          string
		token, insec bool
		wantErr      bool
	}{
		{"https with token", "https://collector.example:9751", true, false, false},
		{"http without token", "http://collector.example:9751", false, false, false},
		{"http with token", "http://collector.example:9751", true, false, true},
		{"http with token allowed", "http://collector.example:9751", true, true, false},
		{"upper-case scheme", "HTTP://collector.example:9751", true, false, true},
		{"ipv4 loopback", "http://127.0.0.1:9751", true, false, false},
		{"ipv4 loopback range", "http://127.3.2.1:9751/v1/repo", true, false, false},
		{"ipv6 loopback", "http://[::1]:9751", true, false, false},
		{"localhost is a name", "http://localhost:9751", true, false, true},
		{"private address", "http://10.0.0.1:9751", true, false, true},
		{"unspecified address", "http://0.0.0.0:9751", true, false, true},
		{"mapped loopback", "http://[::ffff:127.0.0.1]:9751", true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.url, tc.token, tc.insec)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Check(%q, %v, %v) = %v, want error %v", tc.url, tc.token, tc.insec, err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), Field) {
				t.Errorf("error %q does not name %s", err, Field)
			}
		})
	}
}
