package modelsync

import (
	"os"
	"path/filepath"
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

// TestTokenFileKind: EDGELOOP_TOKEN_FILE must hold a secret; a hash list (the collector's
// side) or an empty file is a configuration error naming repository, a missing file is not
// (it is the first poll's).
func TestTokenFileKind(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, file, want string
	}{
		{"secret", write("node.token", "s3cr3t\n"), ""},
		{"missing", filepath.Join(dir, "none.token"), ""},
		{"hash list", write("nodes.sha256", "edge-1 sha256:"+strings.Repeat("0a", 32)+"\n"), "holds a hash list"},
		{"empty", write("empty.token", ""), "empty token file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Repository, cfg.TrustedKeys = "https://collector.example.com:9751/v1/repo", []string{"/etc/edgeloop/edgeloop.pub"}
			err := cfg.validate(func(k string) (string, bool) { return tc.file, k == objstore.EnvTokenFile })
			if tc.want == "" {
				if err != nil {
					t.Fatalf("validate = %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), "repository: ") || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), objstore.EnvTokenFile) {
				t.Fatalf("validate = %v, want a repository error saying %q and naming %s", err, tc.want, objstore.EnvTokenFile)
			}
		})
	}
}
