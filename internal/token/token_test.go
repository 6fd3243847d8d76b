package token

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const hash = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestClassify(t *testing.T) {
	tests := []struct {
		name, content string
		want          Kind
	}{
		{"nothing", "", Empty},
		{"white space", " \n\t\n", Empty},
		{"comments only", "# fleet\n  # none yet\n", Empty},
		{"token", "s3cr3t-token\n", Secret},
		{"token without newline", "abc.def_ghi~", Secret},
		{"token with hash sign", "abc#def", Secret},
		{"hash line", "edge-1 " + hash + "\n", HashList},
		{"hash lines with comments", "# nodes\nedge-1 " + hash + " # first\nedge-2 " + hash + "\n", HashList},
		{"bare hash", hash + "\n", HashList},
		{"two words", "two words\n", Other},
		{"two lines", "one\ntwo\n", Other},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify([]byte(tt.content)); got != tt.want {
				t.Errorf("Classify(%q) = %v, want %v", tt.content, got, tt.want)
			}
		})
	}
}

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadSecret(t *testing.T) {
	tests := []struct {
		name, content, want, wantErr string
	}{
		{"token", "  tok-123\n", "tok-123", ""},
		{"empty", "\n", "", "empty token file"},
		{"hash list", "alertmanager " + hash + "\n", "", "holds a hash list (\"<id> sha256:<hex>\" lines), which a server reads; this key expects a secret"},
		{"two lines", "a\nb\n", "", "holds several lines and no hash"},
		{"space", "a b\n", "", "printable ASCII without spaces"},
		{"control character", "a\x01b", "", "printable ASCII without spaces"},
		{"too long", strings.Repeat("a", MaxSecretBytes+1), "", "more than a token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := write(t, "x.token", tt.content)
			got, err := ReadSecret(p)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("ReadSecret = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), p) {
				t.Fatalf("ReadSecret error = %v; want one naming %s and containing %q", err, p, tt.wantErr)
			}
		})
	}
	if _, err := ReadSecret(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
}

func TestReadHashList(t *testing.T) {
	tests := []struct {
		name, content, wantErr string
	}{
		{"hash lines", "edge-1 " + hash + "\n", ""},
		{"malformed lines are the parser's", "edge-1 nothash extra\n", ""},
		{"empty", "", "empty token file"},
		{"comments only", "# nobody\n", "empty token file"},
		{"bare secret", "tok-123\n", "holds a secret (one raw token), which a client sends; this key expects a hash list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := write(t, "x.sha256", tt.content)
			data, err := ReadHashList(p)
			if tt.wantErr == "" {
				if err != nil || string(data) != tt.content {
					t.Fatalf("ReadHashList = %q, %v", data, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), p) {
				t.Fatalf("ReadHashList error = %v; want one naming %s and containing %q", err, p, tt.wantErr)
			}
		})
	}
}
