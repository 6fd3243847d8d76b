// Package configtest checks a component's configuration against files that each break one rule.
package configtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/config"
)

// RunInvalid runs one subtest per file matching glob (conventionally testdata/invalid/*.yaml).
// Each file's first line is "# want: <message>"; decoding the file with config.Parse over the
// defaults that newDefaults returns must fail with exactly that message.
func RunInvalid(t *testing.T, glob string, newDefaults func() config.Validator) {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		t.Fatalf("configtest: no files match %s: %v", glob, err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), filepath.Ext(file)), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("%s: first line must be '# want: <message>'", file)
			}
			err = config.Parse(data, newDefaults())
			if err == nil {
				t.Fatalf("accepted; want error %q", want)
			}
			if got := err.Error(); got != want {
				t.Fatalf("error:\n got %q\nwant %q", got, want)
			}
		})
	}
}
