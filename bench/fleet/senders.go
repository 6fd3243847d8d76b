package main

import (
	"regexp"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// kept are the sender metrics the simulator sums over its nodes: retries are the failed
// batches, and errors_total says why they failed.
var kept = map[string]bool{"edgeloop_sender_batches_total": true, "edgeloop_sender_errors_total": true}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// sumRegisterer is the prometheus.Registerer of every node's sender: it keeps the collectors
// of the metrics in kept, and sums them over the fleet on demand. A registry per node would
// cost memory for series nobody reads; one registry cannot take the same names twice.
type sumRegisterer struct {
	mu    sync.Mutex
	cols  []prometheus.Collector
	names map[*prometheus.Desc]string // fqName by Desc: the Descs are shared by every node
}

// Register implements prometheus.Registerer.
func (r *sumRegisterer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	keep := false
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil && kept[m[1]] {
			keep = true
		}
	}
	if keep {
		r.mu.Lock()
		r.cols = append(r.cols, c)
		r.mu.Unlock()
	}
	return nil
}

// MustRegister implements prometheus.Registerer.
func (r *sumRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

// Unregister implements prometheus.Registerer.
func (r *sumRegisterer) Unregister(prometheus.Collector) bool { return true }

// sums returns every kept counter summed over the nodes, by "name{label=value}".
func (r *sumRegisterer) sums() map[string]float64 {
	r.mu.Lock()
	cols := append([]prometheus.Collector(nil), r.cols...)
	r.mu.Unlock()
	names := r.names
	if names == nil {
		names = map[*prometheus.Desc]string{}
	}
	defer func() { r.mu.Lock(); r.names = names; r.mu.Unlock() }()
	out := map[string]float64{}
	ch := make(chan prometheus.Metric, 64)
	go func() {
		for _, c := range cols {
			c.Collect(ch)
		}
		close(ch)
	}()
	for m := range ch {
		var pb dto.Metric
		if m.Write(&pb) != nil || pb.Counter == nil {
			continue
		}
		name, ok := names[m.Desc()]
		if !ok {
			if f := fqName.FindStringSubmatch(m.Desc().String()); f != nil {
				name = f[1]
			}
			names[m.Desc()] = name
		}
		for _, l := range pb.Label {
			name += "{" + l.GetName() + "=" + l.GetValue() + "}"
		}
		out[name] += pb.Counter.GetValue()
	}
	return out
}
