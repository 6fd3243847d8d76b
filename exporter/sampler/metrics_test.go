package sampler

import (
	"flag"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/metrics.golden from the current output")

// TestMetricsGolden scripts decisions of every outcome for two models, compares the exposition
// with testdata/metrics.golden (regenerate with -update, then review the diff), and checks it
// with client_golang's and promtool's linters.
func TestMetricsGolden(t *testing.T) {
	cfg := enabled(
		StrategyConfig{Name: "random", Type: Random, Probability: ptr(0.001)},
		StrategyConfig{Name: "low_confidence", Type: Threshold, Threshold: ptr(0.6), Probability: ptr(0.5),
			Limits: []Limit{{Type: Minutely, Value: 2}}},
	)
	cfg.MaxBytesPerDay = 10000
	reg := prometheus.NewPedanticRegistry()
	// Draws in order: each prediction draws for random, then (when it matches) low_confidence.
	s := mustNew(t, cfg, Options{Registerer: reg, Now: newClock().Now, Rand: seqRand(t,
		0.9,      // fmnist, confident: random loses; low_confidence does not match
		0.9, 0.1, // fmnist, unsure: low_confidence captures
		0.9, 0.7, // fmnist, unsure: low_confidence loses its draw (probability)
		0.9, 0.1, // fmnist, unsure, the same image again (duplicate)
		0.0005,   // fmnist, confident: random captures
		0.9, 0.1, // fmnist, unsure: low_confidence captures (its 2nd token)
		0.9, 0.1, // fmnist, unsure: low_confidence out of tokens (rate_limit)
		0.9, 0.1, // mnist, unsure, 20000 bytes: byte_budget
	)})
	img := image(1)
	for _, c := range []*Candidate{
		cand(0.95, 1),
		{Model: "fmnist", Scores: scores(0.3), Input: img, Shape: []int64{784}, Size: 3200},
		cand(0.3, 2),
		{Model: "fmnist", Scores: scores(0.3), Input: img, Shape: []int64{784}, Size: 3200},
		cand(0.97, 3),
		cand(0.3, 4),
		cand(0.3, 5),
		{Model: "mnist", Scores: scores(0.3), Input: image(6), Size: 20000},
	} {
		s.Decide(c)
	}
	s.Skipped("fmnist", "spool_full")
	s.Skipped("mnist", SkipDuplicate)

	testenv.CheckMetricsGolden(t, reg, "testdata/metrics.golden", *update)
}
