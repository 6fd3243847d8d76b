//go:build race

package builtin

// raceEnabled is set under -race, where sync.Pool drops a share of what it is given on
// purpose, so allocation counts mean nothing.
const raceEnabled = true
