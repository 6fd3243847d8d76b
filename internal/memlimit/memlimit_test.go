package memlimit

import (
	"errors"
	"os"
	"runtime/debug"
	"testing"
)

func TestFromCgroup(t *testing.T) {
	// The limit is process-wide: put back what the test binary started with.
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(limit) })

	noFile := func(string) ([]byte, error) { return nil, os.ErrNotExist }
	file := func(content string) func(string) ([]byte, error) {
		return func(path string) ([]byte, error) {
			if path != CgroupMemoryMax {
				return nil, errors.New("unexpected path " + path)
			}
			return []byte(content), nil
		}
	}
	for _, tc := range []struct {
		name     string
		env      map[string]string
		readFile func(string) ([]byte, error)
		want     int64 // the limit set, 0 for none (the runtime's stays)
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
			if got := FromCgroup(func(k string) string { return tc.env[k] }, tc.readFile); got != tc.want {
				t.Errorf("FromCgroup = %d, want %d", got, tc.want)
			}
			want := tc.want
			if want == 0 {
				want = limit
			}
			if l := debug.SetMemoryLimit(-1); l != want {
				t.Errorf("memory limit is %d, want %d", l, want)
			}
		})
	}
}
