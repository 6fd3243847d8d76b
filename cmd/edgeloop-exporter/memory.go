package main

import (
	"runtime/debug"
	"strconv"
	"strings"
)

// edgeGCPercent is the edge binary's GOGC when the environment sets none. An idle exporter's
// live heap is 2-3 MB (the model's weights, compiled patterns, metric descriptors) and Go's
// default of 100 lets as much garbage again build up between collections; with 50 the median
// idle RSS was 23.6-24.3 MiB in four runs where Go's default gave 24.4-25.4 (docs/benchmarks.md,
// "Edge binary: size and idle RSS"), the target being 25. Collections come twice as
// often, which moved batch-32 inference throughput by less than the noise between runs.
const edgeGCPercent = 50

// cgroupMemoryMax is where cgroup v2 publishes the memory limit of the process's cgroup: a
// container's limit, or a systemd unit's MemoryMax=.
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// memoryLimitShare is the share of a cgroup's memory limit the Go runtime is told to stay
// under: the rest is for the binary's own pages, cgo (NVML) and what the runtime cannot count,
// so that the collector works harder before the kernel's OOM killer acts.
const memoryLimitShare = 0.9

// memoryDefaults is what applyMemoryDefaults set.
type memoryDefaults struct {
	// GCPercent is the GOGC set, or 0 when the environment's GOGC stood.
	GCPercent int
	// Limit is the soft memory limit set in bytes, or 0 when none was.
	Limit int64
}

// applyMemoryDefaults tunes the Go runtime for a small edge process, leaving alone whatever the
// operator set through GOGC or GOMEMLIMIT: GOGC defaults to edgeGCPercent, and under a cgroup
// memory limit GOMEMLIMIT defaults to 90% of it (docs/deploy.md).
func applyMemoryDefaults(getenv func(string) string, readFile func(string) ([]byte, error)) memoryDefaults {
	var d memoryDefaults
	if getenv("GOGC") == "" {
		debug.SetGCPercent(edgeGCPercent)
		d.GCPercent = edgeGCPercent
	}
	if getenv("GOMEMLIMIT") != "" {
		return d
	}
	b, err := readFile(cgroupMemoryMax)
	if err != nil {
		return d
	}
	if max, ok := parseMemoryMax(string(b)); ok {
		d.Limit = int64(float64(max) * memoryLimitShare)
		debug.SetMemoryLimit(d.Limit)
	}
	return d
}

// parseMemoryMax reads a cgroup v2 memory.max: a byte count, or "max" for no limit (false).
func parseMemoryMax(s string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}
