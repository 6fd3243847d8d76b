package main

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/exporter/sampler"
	"github.com/edgeloop/edgeloop/internal/fmnist"
)

// closeTarget is close_to_threshold's threshold: docs/sampler.md's example, the top-1
// probability at which the model is as likely right as wrong.
const closeTarget = 0.5

// strategy is one of the sampler's strategy types with the one parameter the benchmark sets
// to meet the budget.
type strategy struct {
	Name string
	// key is the value the parameter is compared with, per frame: a frame is captured when
	// key < param (the confidence for the threshold types, |confidence − 0.5| for
	// close_to_threshold, the random draw for random).
	key func(s *stream, i int) float64
	// config is the strategy with its parameter at param.
	config func(param float64) sampler.StrategyConfig
}

func strategies() []strategy {
	below := func(name string, typ sampler.StrategyType, sc observe.Scorer, conf func(*stream, int) float64) strategy {
		return strategy{Name: name, key: conf, config: func(p float64) sampler.StrategyConfig {
			t := min(1, p)
			return sampler.StrategyConfig{Name: name, Type: typ, Scorer: sc, Threshold: &t}
		}}
	}
	return []strategy{
		{Name: "random", key: func(s *stream, i int) float64 { return s.draws[i] }, config: func(p float64) sampler.StrategyConfig {
			p = min(1, p)
			return sampler.StrategyConfig{Name: "random", Type: sampler.Random, Probability: &p}
		}},
		below("threshold", sampler.Threshold, observe.MaxSoftmax, func(s *stream, i int) float64 { return s.scores[i].MaxSoftmax }),
		below("margin", sampler.Margin, "", func(s *stream, i int) float64 { return s.scores[i].Margin }),
		below("entropy", sampler.Entropy, "", func(s *stream, i int) float64 { return s.scores[i].Entropy }),
		{Name: "close_to_threshold", key: func(s *stream, i int) float64 { return math.Abs(s.scores[i].MaxSoftmax - closeTarget) },
			config: func(p float64) sampler.StrategyConfig {
				t := closeTarget
				return sampler.StrategyConfig{Name: "close_to_threshold", Type: sampler.CloseToThreshold, Threshold: &t, Epsilon: min(1, p)}
			}},
	}
}

// frameInterval is the time between two frames of one node: the dedup window (10 minutes)
// then spans 600 of a node's frames.
const frameInterval = time.Second

// capture runs the stream in time order through one sampler per node, configured with st at
// param (and the default dedup settings, near duplicates included, when dedup), and returns
// the first budget captures in time order: a fleet-wide upload budget. Without dedup the
// candidates carry no input, which the sampler never checks for duplicates.
func capture(s *stream, st strategy, param float64, dedup bool, nodes, budget int) ([]int, error) {
	cfg := sampler.DefaultConfig()
	cfg.Enabled, cfg.Strategies, cfg.Limits, cfg.MaxBytesPerDay = true, []sampler.StrategyConfig{st.config(param)}, nil, 0
	start := time.Unix(0, 0)
	type node struct {
		s      *sampler.Sampler
		now    time.Time
		frames int
	}
	ns := make([]*node, nodes)
	var current int // the frame being decided, for the random strategy's draw
	for i := range ns {
		n := &node{now: start}
		smp, err := sampler.New(cfg, sampler.Options{Now: func() time.Time { return n.now }, Rand: func() float64 { return s.draws[current] }})
		if err != nil {
			return nil, fmt.Errorf("sampler for %s at %g: %w", st.Name, param, err)
		}
		n.s, ns[i] = smp, n
	}
	var got []int
	shape := []int64{fmnist.Pixels}
	for i := range s.labels {
		n := ns[s.node[i]]
		n.now = start.Add(time.Duration(n.frames) * frameInterval)
		n.frames++
		current = i
		c := sampler.Candidate{Model: "fashion", Scores: s.scores[i], Shape: shape, Size: 4 * fmnist.Pixels}
		if dedup {
			c.Input = s.frames[i*fmnist.Pixels : (i+1)*fmnist.Pixels]
		}
		if n.s.Decide(&c).Capture {
			if got = append(got, i); len(got) == budget {
				break
			}
		}
	}
	return got, nil
}

// selectUploads returns the uploads of st under budget: the strategy's parameter is the
// smallest of the frames' keys at which the fleet captures the budget (found by bisection
// over the sorted keys), and the uploads are the first budget captures. When even the
// loosest parameter captures fewer (dedup can), those are the uploads.
func selectUploads(s *stream, st strategy, dedup bool, nodes, budget int) ([]int, float64, error) {
	keys := make([]float64, len(s.labels))
	for i := range keys {
		keys[i] = st.key(s, i)
	}
	sort.Float64s(keys)
	// param(k) captures the frames whose key is at most keys[k] (the sampler's comparisons
	// are strict: key < param).
	param := func(k int) float64 { return math.Nextafter(keys[k], math.Inf(1)) }
	try := func(k int) ([]int, error) { return capture(s, st, param(k), dedup, nodes, budget) }
	// Without duplicates suppressed, param(budget−1) captures exactly the budget (ties
	// aside); with them, gallop up from there, then bisect.
	lo := min(budget-1, len(keys)-1)
	got, err := try(lo)
	if err != nil || len(got) >= budget {
		return got, param(lo), err
	}
	hi, step := lo, budget
	var best []int
	for {
		if hi == len(keys)-1 {
			// Even the loosest parameter captures too few: those are the uploads.
			if best == nil {
				best, err = try(hi)
			}
			if err != nil || len(best) < budget {
				return best, param(hi), err
			}
			break
		}
		lo, hi = hi+1, min(hi+step, len(keys)-1)
		step *= 2
		if best, err = try(hi); err != nil {
			return nil, 0, err
		}
		if len(best) >= budget {
			break
		}
	}
	// The bisection stops within a 50th of the budget: each pass hashes every matching
	// frame, and a parameter a few frames looser changes the first budget captures little.
	for hi-lo > budget/50 {
		mid := (lo + hi) / 2
		got, err := try(mid)
		if err != nil {
			return nil, 0, err
		}
		if len(got) >= budget {
			best, hi = got, mid
		} else {
			lo = mid + 1
		}
	}
	return best, param(hi), nil
}
