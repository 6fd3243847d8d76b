package token

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseList(t *testing.T) {
	good := HashLine("edge-1", "s3cret")
	for _, tc := range []struct {
		name, content, wantErr string
		n                      int
	}{
		{"valid with comments", "# fleet\n\n" + good + "  # the first\n" + HashLine("edge-2", "other") + "\n", "", 2},
		{"three fields", good + " extra\n", "line 1: want", 0},
		{"not sha256", "edge-1 md5:abcd\n", "line 1: the hash must be", 0},
		{"short hash", "edge-1 sha256:abcd\n", "line 1: the hash must be", 0},
		{"bad id", strings.Replace(good, "edge-1", "../x", 1) + "\n", "line 1: id", 0},
		{"id starting with a dot", strings.Replace(good, "edge-1", ".x", 1) + "\n", "line 1: id", 0},
		{"id of 129 characters", strings.Replace(good, "edge-1", strings.Repeat("a", 129), 1) + "\n", "line 1: id", 0},
		{"shared hash", good + "\n" + strings.Replace(good, "edge-1", "edge-2", 1) + "\n", "line 2: the same hash as edge-1's", 0},
		{"every bad line named", "x y z\n" + good + "\nedge-3 sha256:00\n", "line 3: the hash", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ParseList([]byte(tc.content))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || l.Len() != tc.n {
				t.Fatalf("%d tokens, %v; want %d", l.Len(), err, tc.n)
			}
			if id, ok := l.Lookup("s3cret"); !ok || id != "edge-1" {
				t.Fatalf("lookup = %q, %v", id, ok)
			}
			if id, ok := l.Lookup("other"); !ok || id != "edge-2" {
				t.Fatalf("lookup of the second = %q, %v", id, ok)
			}
			if _, ok := l.Lookup("s3cre"); ok {
				t.Fatal("a prefix of the token matched")
			}
		})
	}
	if _, ok := (List{}).Lookup(""); ok {
		t.Error("the zero List accepted the empty token")
	}
}

// TestLoadList checks the errors a server's --config.check shows: the file's kind (through
// ReadHashList) and its lines, each naming the path.
func TestLoadList(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content, wantErr string
	}{
		{"good", HashLine("alice", "op-tok") + "\n", ""},
		{"empty", "", "tokens: " + filepath.Join(dir, "empty") + ": empty token file"},
		{"secret", "op-tok\n", "tokens: " + filepath.Join(dir, "secret") + ": holds a secret"},
		{"malformed", "alice sha256:00\n", "tokens " + filepath.Join(dir, "malformed") + ": line 1: the hash must be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			l, err := LoadList(p)
			if tc.wantErr == "" {
				if err != nil || l.Len() != 1 {
					t.Fatalf("LoadList = %d tokens, %v", l.Len(), err)
				}
				if id, ok := l.Lookup("op-tok"); !ok || id != "alice" {
					t.Fatalf("lookup = %q, %v", id, ok)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Fatalf("LoadList error = %v, want it to start with %q", err, tc.wantErr)
			}
		})
	}
	if _, err := LoadList(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
}

func TestBearer(t *testing.T) {
	for _, tc := range []struct {
		header, want string
		ok           bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  abc ", "abc", true},
		{"Bearer ", "", false},
		{"Basic YTpi", "", false},
		{"Bearerabc", "", false},
		{"", "", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		got, ok := Bearer(r)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Bearer(%q) = %q, %v; want %q, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

// BenchmarkLookup looks tokens up in lists the size of a fleet's node tokens file: with the
// lookup by hash the cost per request does not grow with the list (compare the sizes' ns/op).
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		var lines strings.Builder
		for i := range n {
			lines.WriteString(HashLine(fmt.Sprintf("edge-%d", i), fmt.Sprintf("token-%d", i)) + "\n")
		}
		l, err := ParseList([]byte(lines.String()))
		if err != nil {
			b.Fatal(err)
		}
		tok := fmt.Sprintf("token-%d", n/2)
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, ok := l.Lookup(tok); !ok {
					b.Fatal("not found")
				}
			}
		})
	}
}
