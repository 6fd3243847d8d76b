package sample

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// TestNameChecksMatchTheRules: the hand-written checks accept exactly what the format's rules,
// written as regular expressions, accept, on edge cases and on random strings over an alphabet
// with every character class the rules tell apart.
func TestNameChecksMatchTheRules(t *testing.T) {
	checks := []struct {
		name  string
		check func(string) bool
		rule  *regexp.Regexp
	}{
		{"ValidName", ValidName, regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)},
		{"ValidKey", ValidKey, regexp.MustCompile(`^[0-9a-f]{32}$`)},
		{"validFile", validFile, regexp.MustCompile(`^input\.[a-z0-9]{1,16}$`)},
	}
	cases := []string{"", ".", "..", "-a", ".a", "_a", "a-", "a.", "A9_.-", "a/b", "a b", "a\x00", "é",
		strings.Repeat("a", 128), strings.Repeat("a", 129), strings.Repeat("f", 32), strings.Repeat("F", 32),
		strings.Repeat("0", 31), strings.Repeat("0", 33), "input.npy", "input.", "input.PNG", "input.png.x",
		"input." + strings.Repeat("z", 16), "input." + strings.Repeat("z", 17), "Input.npy", "input_npy"}
	const alphabet = "aZz09_.-/ Ff\x7féinput"
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b strings.Builder
		if rng.IntN(2) == 0 {
			b.WriteString("input.")
		}
		for range rng.IntN(40) {
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		cases = append(cases, b.String())
	}
	for _, c := range checks {
		for _, s := range cases {
			if got, want := c.check(s), c.rule.MatchString(s); got != want {
				t.Errorf("%s(%q) = %v, the rule says %v", c.name, s, got, want)
			}
		}
	}
}
