package main

import (
	"errors"
	"os"
	"runtime/debug"
	"testing"
)

func TestApplyMemoryDefaults(t *testing.T) {
	// The runtime settings are process-wide: put back what the test binary started with.
	gc := debug.SetGCPercent(100)
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(gc); debug.SetMemoryLimit(limit) })

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
		name      string
		env       map[string]string
		readFile  func(string) ([]byte, error)
		want      memoryDefaults
		wantGC    int
		wantLimit int64
	}{
		{name: "bare host", readFile: noFile, want: memoryDefaults{GCPercent: 50}, wantGC: 50, wantLimit: limit},
		{name: "no cgroup limit", readFile: file("max\n"), want: memoryDefaults{GCPercent: 50}, wantGC: 50, wantLimit: limit},
		{name: "cgroup limit", readFile: file("268435456\n"), want: memoryDefaults{GCPercent: 50, Limit: 241591910}, wantGC: 50, wantLimit: 241591910},
		{name: "garbage in memory.max", readFile: file("lots"), want: memoryDefaults{GCPercent: 50}, wantGC: 50, wantLimit: limit},
		{name: "operator's GOGC stands", env: map[string]string{"GOGC": "200"}, readFile: noFile, want: memoryDefaults{}, wantGC: 100, wantLimit: limit},
		{name: "operator's GOMEMLIMIT stands", env: map[string]string{"GOMEMLIMIT": "1GiB"}, readFile: file("268435456"), want: memoryDefaults{GCPercent: 50}, wantGC: 50, wantLimit: limit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(limit)
			got := applyMemoryDefaults(func(k string) string { return tc.env[k] }, tc.readFile)
			if got != tc.want {
				t.Errorf("applyMemoryDefaults = %+v, want %+v", got, tc.want)
			}
			if gc := debug.SetGCPercent(100); gc != tc.wantGC {
				t.Errorf("GOGC is %d, want %d", gc, tc.wantGC)
			}
			if l := debug.SetMemoryLimit(-1); l != tc.wantLimit {
				t.Errorf("memory limit is %d, want %d", l, tc.wantLimit)
			}
		})
	}
}
