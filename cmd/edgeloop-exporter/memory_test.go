package main

import (
	"errors"
	"os"
	"runtime/debug"
	"testing"
)

func TestApplyMemoryDefaults(t *testing.T) {
	// The limit is process-wide: put back what the test binary started with.
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(limit) })

	noFile := func(string) ([]byte, error) { return nil, os.ErrNotExist }
	file := func(content string) func(string) ([]byte, error) {
		return func(path string) ([]byte, error) {
			if path != cgroupMemoryMax {
				return nil, errors.New("unexpected path " + path)
			}
			return []byte(content), nil
		}
	}
	for _, tc := range []struct {
		name     string
		env      map[string]string
		readFile func(string) ([]byte, error)
		want     int64 // what it reports, and the runtime's limit after (0: unchanged)
	}{
		{name: "bare host", readFile: noFile},
		{name: "no cgroup limit", readFile: file("max\n")},
		{name: "cgroup limit", readFile: file("268435456\n"), want: 241591910},
		{name: "garbage in memory.max", readFile: file("lots")},
		{name: "zero in memory.max", readFile: file("0")},
		{name: "operator's GOMEMLIMIT stands", env: map[string]string{"GOMEMLIMIT": "1GiB"}, readFile: file("268435456")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetMemoryLimit(limit)
			got := applyMemoryDefaults(func(k string) string { return tc.env[k] }, tc.readFile)
			if got != tc.want {
				t.Errorf("applyMemoryDefaults = %d, want %d", got, tc.want)
			}
			wantLimit := tc.want
			if wantLimit == 0 {
				wantLimit = limit
			}
			if l := debug.SetMemoryLimit(-1); l != wantLimit {
				t.Errorf("memory limit is %d, want %d", l, wantLimit)
			}
		})
	}
}
