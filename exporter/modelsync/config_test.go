package modelsync

import (
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/objstore"
)

// TestTokenOverPlainHTTP checks the plain-http token rule on the repository URL: the token
// comes from EDGELOOP_TOKEN_FILE, so whether it is set decides.
func TestTokenOverPlainHTTP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		url     string
		token   bool
		allow   bool
		wantErr bool
	}{
		{"https with token", "https://collector.example.com:9751/v1/repo", true, false, false},
		{"http without token", "http://collector.example.com:9751/v1/repo", false, false, false},
		{"http with token", "http://collector.example.com:9751/v1/repo", true, false, true},
		{"http with token allowed", "http://collector.example.com:9751/v1/repo", true, true, false},
		{"loopback with token", "http://127.0.0.1:9751/v1/repo", true, false, false},
		{"s3 is not this rule's", "s3://models?endpoint=minio:9000", true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Repository, cfg.TrustedKeys, cfg.AllowInsecureToken = tc.url, []string{"/etc/edgeloop/edgeloop.pub"}, tc.allow
			env := func(k string) (string, bool) {
				if k == objstore.EnvTokenFile && tc.token {
					return "/etc/edgeloop/token", true
				}
				return "", false
			}
			err := cfg.validate(env)
			if (err != nil) != tc.wantErr {
				t.Fatalf("validate = %v, want error %v", err, tc.wantErr)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "repository: ") {
				t.Errorf("error %q does not name the repository field", err)
			}
		})
	}
	// New applies the rule too, before anything is opened.
	t.Setenv(objstore.EnvTokenFile, "/nonexistent/token")
	cfg := DefaultConfig()
	cfg.Repository, cfg.TrustedKeys, cfg.CacheDir = "http://collector.example.com:9751/v1/repo", []string{"/nonexistent.pub"}, t.TempDir()
	if _, err := New(t.Context(), cfg, nil, Options{}); err == nil || !strings.Contains(err.Error(), "allow_insecure_token") {
		t.Fatalf("New = %v, want the plain-http token error", err)
	}
}
