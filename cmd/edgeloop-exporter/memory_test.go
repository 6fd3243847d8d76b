package main

import (
	"errors"
	"os"
	"runtime/debug"
	"testing"

	"github.com/edgeloop/edgeloop/internal/memlimit"
)

func TestApplyMemoryDefaults(t *testing.T) {
	// The settings are process-wide: put back what the test binary started with.
	gc := debug.SetGCPercent(100)
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(gc); debug.SetMemoryLimit(limit) })

	noFile := func(string) ([]byte, error) { return nil, os.ErrNotExist }
	file := func(content string) func(string) ([]byte, error) {
		return func(path string) ([]byte, error) {
			if path != memlimit.CgroupMemoryMax {
				return nil, errors.New("unexpected path " + path)
			}
			return []byte(content), nil
		}
	}
	for _, tc := range []struct {
		name      string
		env       map[string]string
		readFile  func(string) ([]byte, error)
		want      memoryDefaults
		wantGC    int   // the runtime's GOGC after
		wantLimit int64 // the runtime's limit after, 0 for unchanged
	}{
		{name: "bare host", readFile: noFile, want: memoryDefaults{GCPercent: 50}, wantGC: 50},
		{name: "no cgroup limit", readFile: file("max\n"), want: memoryDefaults{GCPercent: 50}, wantGC: 50},
		{name: "cgroup limit", readFile: file("268435456\n"), want: memoryDefaults{GCPercent: 50, Limit: 241591910}, wantGC: 50, wantLimit: 241591910},
		{name: "operator's GOGC stands", env: map[string]string{"GOGC": "200"}, readFile: file("268435456"), want: memoryDefaults{Limit: 241591910}, wantGC: 100, wantLimit: 241591910},
		{name: "operator's GOMEMLIMIT stands", env: map[string]string{"GOMEMLIMIT": "1GiB"}, readFile: file("268435456"), want: memoryDefaults{GCPercent: 50}, wantGC: 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(limit)
			got := applyMemoryDefaults(func(k string) string { return tc.env[k] }, tc.readFile)
			if got != tc.want {
				t.Errorf("applyMemoryDefaults = %+v, want %+v", got, tc.want)
			}
			if g := debug.SetGCPercent(100); g != tc.wantGC {
				t.Errorf("GOGC is %d, want %d", g, tc.wantGC)
			}
			wantLimit := tc.wantLimit
			if wantLimit == 0 {
				wantLimit = limit
			}
			if l := debug.SetMemoryLimit(-1); l != wantLimit {
				t.Errorf("memory limit is %d, want %d", l, wantLimit)
			}
		})
	}
}
