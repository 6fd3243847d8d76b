package main

import (
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroupMemoryMax is where cgroup v2 publishes the memory limit of the process's cgroup: a
// container's limit, or a systemd unit's MemoryMax=.
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// memoryLimitShare is the share of a cgroup's memory limit the Go runtime is told to stay
// under: the rest is for the binary's own pages, cgo (NVML) and what the runtime cannot count,
// so that the collector works harder before the kernel's OOM killer acts.
const memoryLimitShare = 0.9

// applyMemoryDefaults gives the Go runtime a soft memory limit of 90% of the cgroup's
// memory.max when the process runs under one and the operator set no GOMEMLIMIT; it returns the
// limit set in bytes, or 0. GOGC stays Go's: a lower default measured no lower idle RSS beyond
// the noise between runs (docs/benchmarks.md, "Edge binary: size and idle RSS") and would cost
// collections under load.
func applyMemoryDefaults(getenv func(string) string, readFile func(string) ([]byte, error)) int64 {
	if getenv("GOMEMLIMIT") != "" {
		return 0
	}
	b, err := readFile(cgroupMemoryMax)
	if err != nil {
		return 0
	}
	max, ok := parseMemoryMax(string(b))
	if !ok {
		return 0
	}
	limit := int64(float64(max) * memoryLimitShare)
	debug.SetMemoryLimit(limit)
	return limit
}

// parseMemoryMax reads a cgroup v2 memory.max: a byte count, or "max" for no limit (false).
func parseMemoryMax(s string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}
