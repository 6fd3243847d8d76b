//go:build !race

package builtin

// raceEnabled is set under -race (race_on_test.go).
const raceEnabled = false
