// Package memlimit gives the Go runtime a soft memory limit (GOMEMLIMIT) from the memory limit
// of the process's cgroup, where the operator set none: under a container's or a systemd
// unit's limit, the garbage collector then works harder before the kernel's OOM killer acts,
// instead of letting the heap grow to twice what is live (GOGC's default) past the limit.
package memlimit

import (
	"runtime/debug"
	"strconv"
	"strings"
)

// CgroupMemoryMax is where cgroup v2 publishes the memory limit of the process's cgroup: a
// container's limit, or a systemd unit's MemoryMax=.
const CgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// Share is the share of a cgroup's memory limit the Go runtime is told to stay under: the
// rest is for the binary's own pages, cgo (NVML) and what the runtime cannot count.
const Share = 0.9

// FromCgroup sets the runtime's soft memory limit to Share of the cgroup's memory.max, unless
// the environment sets GOMEMLIMIT (the operator's choice stands) or the cgroup has no limit.
// It returns the limit set in bytes, 0 when none was. getenv and readFile are os.Getenv and
// os.ReadFile but in tests.
func FromCgroup(getenv func(string) string, readFile func(string) ([]byte, error)) int64 {
	if getenv("GOMEMLIMIT") != "" {
		return 0
	}
	b, err := readFile(CgroupMemoryMax)
	if err != nil {
		return 0
	}
	max, ok := parseMemoryMax(string(b))
	if !ok {
		return 0
	}
	limit := int64(float64(max) * Share)
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
