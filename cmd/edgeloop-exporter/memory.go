package main

import (
	"runtime/debug"

	"github.com/edgeloop/edgeloop/internal/memlimit"
)

// edgeGCPercent is the edge binary's GOGC when the environment sets none. An idle exporter's
// live heap is 2-3 MB (the model's weights, compiled patterns, metric descriptors) and Go's
// default of 100 lets as much garbage again build up between collections; with 50 the median
// idle RSS was 23.6-24.3 MiB in four runs where Go's default gave 24.4-25.4 (docs/benchmarks.md,
// "Edge binary: size and idle RSS"), the target being 25. Collections come twice as
// often, which moved batch-32 inference throughput by less than the noise between runs.
const edgeGCPercent = 50

// memoryDefaults is what applyMemoryDefaults set.
type memoryDefaults struct {
	// GCPercent is the GOGC set, or 0 when the environment's GOGC stood.
	GCPercent int
	// Limit is the soft memory limit set in bytes, or 0 when none was.
	Limit int64
}

// applyMemoryDefaults tunes the Go runtime for a small edge process, leaving alone whatever the
// operator set through GOGC or GOMEMLIMIT: GOGC defaults to edgeGCPercent, and under a cgroup
// memory limit GOMEMLIMIT defaults to 90% of it (memlimit.FromCgroup, docs/deploy.md).
func applyMemoryDefaults(getenv func(string) string, readFile func(string) ([]byte, error)) memoryDefaults {
	var d memoryDefaults
	if getenv("GOGC") == "" {
		debug.SetGCPercent(edgeGCPercent)
		d.GCPercent = edgeGCPercent
	}
	d.Limit = memlimit.FromCgroup(getenv, readFile)
	return d
}
