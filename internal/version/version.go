// Package version reports which edgeloop build is running.
package version

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Set at link time by the Makefile: -X github.com/edgeloop/edgeloop/internal/version.version=...
// They are written once by the linker and only read afterwards.
var (
	version  = "dev"
	revision = ""
)

// Info describes the running build.
type Info struct {
	Version   string
	Revision  string
	GoVersion string
}

// Get returns the build's version, VCS revision (from the linker or Go's build info) and Go
// version.
func Get() Info {
	info := Info{Version: version, Revision: revision, GoVersion: runtime.Version()}
	if info.Revision == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					info.Revision = s.Value
				}
			}
		}
	}
	if info.Revision == "" {
		info.Revision = "unknown"
	}
	return info
}

// String is the one-line form `edgeloop version` prints.
func (i Info) String() string {
	return "edgeloop " + i.Version + " (revision " + i.Revision + ", " + i.GoVersion + ")"
}

// NewCollector returns the `edgeloop_build_info{component,version,revision,goversion} 1` gauge,
// the usual way to see in Prometheus which build every node runs.
func NewCollector(component string) prometheus.Collector {
	i := Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "edgeloop_build_info",
		Help: "A metric with a constant '1' value labelled by the component, version, revision and Go version of the running edgeloop build.",
		ConstLabels: prometheus.Labels{
			"component": component, "version": i.Version, "revision": i.Revision, "goversion": i.GoVersion,
		},
	})
	g.Set(1)
	return g
}
