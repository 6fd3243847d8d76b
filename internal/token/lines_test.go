package token

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestEachLine checks what both list formats rely on: comments and blank lines are skipped,
// line numbers count every line, and every line's error is reported, not only the first.
func TestEachLine(t *testing.T) {
	data := "# header\n\nedge-1 a  # trailing\n   \n#x y\nedge-2\tb c\nlast"
	var got []string
	err := EachLine([]byte(data), func(n int, fields []string) error {
		got = append(got, fmt.Sprintf("%d:%s", n, strings.Join(fields, ",")))
		if len(fields) != 2 {
			return fmt.Errorf("line %d: %d fields", n, len(fields))
		}
		return nil
	})
	if want := []string{"3:edge-1,a", "6:edge-2,b,c", "7:last"}; !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
	if err == nil || err.Error() != "line 6: 3 fields\nline 7: 1 fields" {
		t.Errorf("error %q, want both bad lines", err)
	}
	if err := EachLine(nil, func(int, []string) error { t.Error("called for no data"); return nil }); err != nil {
		t.Error(err)
	}
	long := []byte(strings.Repeat("a", maxLineBytes+1))
	if err := EachLine(long, func(int, []string) error { return nil }); err == nil {
		t.Error("a line over the limit passed")
	}
}
