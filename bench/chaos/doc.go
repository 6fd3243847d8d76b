// Package chaos is the chaos soak of the whole loop (docs/benchmarks.md, "Chaos soak"): real
// exporters, a collector, MinIO and the retrain controller under traffic, with a random
// component killed with SIGKILL every few seconds and network faults between the senders and
// the collector and between the data center and MinIO; at the end it checks that no
// acknowledged sample was lost or stored twice, that every job ended and that no model version
// was published twice. The soak itself is the integration-tagged test in this directory
// (`make chaos` for ten minutes; `make test` runs two); this file only names the package.
package chaos
