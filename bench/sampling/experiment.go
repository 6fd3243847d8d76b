package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	trainer "github.com/edgeloop/edgeloop/trainers/go"
)

// Result is a whole run, as -out writes it.
type Result struct {
	Options    options           `json:"options"`
	Conditions []ConditionResult `json:"conditions"`
	Seconds    float64           `json:"seconds"`
	// LoadAverage is /proc/loadavg's first three fields at the end: the machine is shared.
	LoadAverage string `json:"load_average"`
	Cores       int    `json:"cores"`
}

// ConditionResult is one drift condition's curves.
type ConditionResult struct {
	Name  string `json:"name"`
	Drift string `json:"drift"`
	Mix   string `json:"class_mix"`
	// BaseDrifted and BaseClean are the base model's accuracy on the seeds' drifted and clean
	// test images: where every curve starts from.
	BaseDrifted Stat `json:"base_drifted"`
	BaseClean   Stat `json:"base_clean"`
	// StreamError is the base model's error rate on the stream's frames.
	StreamError float64 `json:"stream_error"`
	Arms        []Arm   `json:"arms"`
	// Target is random capture's mean recovered accuracy at the largest budget (without dedup):
	// the accuracy every arm's UploadsToTarget is measured against.
	Target float64 `json:"target"`
}

// Arm is one strategy, with or without near-duplicate suppression.
type Arm struct {
	Strategy string  `json:"strategy"`
	Dedup    bool    `json:"dedup"`
	Points   []Point `json:"points"`
	// UploadsToTarget is the uploads at which the arm's mean curve reaches Target, linear
	// in log(uploads) between budgets; 0 when it never does within the budgets.
	UploadsToTarget float64 `json:"uploads_to_target"`
}

// Label names the arm in tables and plots.
func (a Arm) Label() string {
	if a.Dedup {
		return a.Strategy + " + dedup"
	}
	return a.Strategy
}

// Point is one budget of one arm, over the seeds.
type Point struct {
	Budget int `json:"budget"`
	// Uploads is the mean number of uploads (below Budget only when dedup left too few).
	Uploads float64 `json:"uploads"`
	// Drifted and Clean are the fine-tuned model's accuracies.
	Drifted Stat `json:"drifted"`
	Clean   Stat `json:"clean"`
	// VsRandom is Drifted minus random's (without dedup) at the same budget, paired by seed.
	VsRandom Stat `json:"vs_random"`
	// Wrong is the share of uploads the base model got wrong; Repeats the share that show an
	// item already uploaded (another frame of its burst).
	Wrong   float64 `json:"wrong_share"`
	Repeats float64 `json:"repeat_share"`
	// Param is the mean parameter that met the budget (threshold, epsilon or probability).
	Param float64 `json:"param"`
}

// Stat is a mean over seeds with its 95% confidence interval (Student's t).
type Stat struct {
	Mean   float64   `json:"mean"`
	Lo     float64   `json:"ci_lo"`
	Hi     float64   `json:"ci_hi"`
	Values []float64 `json:"values"`
}

func stat(v []float64) Stat {
	n := float64(len(v))
	var sum, sq float64
	for _, x := range v {
		sum += x
	}
	mean := sum / n
	for _, x := range v {
		sq += (x - mean) * (x - mean)
	}
	half := 0.0
	if len(v) > 1 {
		half = tQuantile975(len(v)-1) * math.Sqrt(sq/(n-1)/n)
	}
	return Stat{Mean: mean, Lo: mean - half, Hi: mean + half, Values: v}
}

// tQuantile975 is Student's t distribution's 97.5% quantile for df degrees of freedom.
func tQuantile975(df int) float64 {
	table := []float64{12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086}
	if df <= len(table) {
		return table[df-1]
	}
	return 1.96 + 2.5/float64(df) // within 0.01 of the exact value beyond 20
}

// seedSetup is what every arm of one seed shares.
type seedSetup struct {
	stream        *stream
	test, clean   *trainer.Examples
	replay        *trainer.Examples
	baseDrift     float64
	baseClean     float64
	mu            sync.Mutex
	cache         map[string]float64Pair // uploads → accuracies: arms that upload the same set share a fine-tune
	fineTuneCount int
}

type float64Pair struct{ drifted, clean float64 }

// job is one fine-tune: a seed, an arm, a budget.
type job struct {
	seed, arm, budget int
	uploads           []int
	param             float64
	acc               float64Pair
}

// run runs every condition; after each it calls done (when not nil) with the result so far,
// so that a long run leaves its finished conditions behind.
func run(ctx context.Context, o options, logger *slog.Logger, done func(*Result) error) (*Result, error) {
	start := time.Now()
	base, err := baseModel(ctx, o, logger)
	if err != nil {
		return nil, err
	}
	d, err := loadData(o.DataDir, o.BaseTrain)
	if err != nil {
		return nil, err
	}
	res := &Result{Options: o, Cores: runtime.NumCPU()}
	for _, name := range o.Conditions {
		c, _ := conditionByName(name)
		cr, err := runCondition(ctx, o, d, base, c, logger)
		if err != nil {
			return nil, fmt.Errorf("condition %s: %w", name, err)
		}
		res.Conditions = append(res.Conditions, *cr)
		res.Seconds = time.Since(start).Seconds()
		if b, err := os.ReadFile("/proc/loadavg"); err == nil {
			res.LoadAverage = strings.Join(strings.Fields(string(b))[:3], " ")
		}
		if done != nil {
			if err := done(res); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

func runCondition(ctx context.Context, o options, d *data, base *trainer.Network, c condition, logger *slog.Logger) (*ConditionResult, error) {
	start := time.Now()
	sts := strategies()
	type armSpec struct {
		st    strategy
		dedup bool
	}
	var arms []armSpec
	for _, dedup := range []bool{false, true} {
		for _, st := range sts {
			arms = append(arms, armSpec{st, dedup})
		}
	}
	setups := make([]*seedSetup, o.Seeds)
	var streamWrong, streamFrames int
	for seed := range o.Seeds {
		s := newStream(d, c, o, seedOf(seed, useStream))
		if err := s.score(base); err != nil {
			return nil, err
		}
		draws := seedOf(seed, useRandom)
		s.draws = make([]float64, len(s.labels))
		for i := range s.draws {
			s.draws[i] = draws.Float64()
		}
		for _, w := range s.wrong {
			if w {
				streamWrong++
			}
		}
		streamFrames += len(s.wrong)
		ss := &seedSetup{stream: s, test: testSet(d, c, o.Test, seedOf(seed, useTest)), clean: cleanSet(d, o.Clean, seedOf(seed, useClean)),
			cache: map[string]float64Pair{}}
		rep := seedOf(seed, useReplay)
		ss.replay = &trainer.Examples{Width: fmnist.Pixels}
		for _, i := range rep.Perm(o.BaseTrain)[:max(o.Replay, 1)] {
			ss.replay.Inputs = append(ss.replay.Inputs, d.train.Image(i)...)
			ss.replay.Labels = append(ss.replay.Labels, int(d.train.Labels[i]))
		}
		ss.baseDrift, ss.baseClean = accuracy(base, ss.test), accuracy(base, ss.clean)
		setups[seed] = ss
	}
	var jobs []*job
	for seed := range o.Seeds {
		for a := range arms {
			for _, b := range o.Budgets {
				jobs = append(jobs, &job{seed: seed, arm: a, budget: b})
			}
		}
	}
	err := parallel(ctx, o.Parallel, len(jobs), func(i int) error {
		j := jobs[i]
		ss, arm := setups[j.seed], arms[j.arm]
		up, param, err := selectUploads(ss.stream, arm.st, arm.dedup, o.Nodes, j.budget)
		if err != nil {
			return err
		}
		j.uploads, j.param = up, param
		key := fmt.Sprint(up)
		ss.mu.Lock()
		acc, ok := ss.cache[key]
		ss.mu.Unlock()
		if !ok {
			net, err := fineTune(ctx, base, o, ss.replay, ss.stream, up, uint64(j.seed)+1)
			if err != nil {
				return err
			}
			acc = float64Pair{accuracy(net, ss.test), accuracy(net, ss.clean)}
			ss.mu.Lock()
			ss.cache[key] = acc
			ss.fineTuneCount++
			ss.mu.Unlock()
		}
		j.acc = acc
		if i%100 == 99 {
			logger.Info("progress", "condition", c.Name, "jobs_done", i+1, "of", len(jobs), "took", time.Since(start).Round(time.Second))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	cr := &ConditionResult{Name: c.Name, Drift: c.Drift.Name(), Mix: mixName(c.Mix), StreamError: float64(streamWrong) / float64(streamFrames)}
	var bd, bc []float64
	fineTunes := 0
	for _, ss := range setups {
		bd, bc = append(bd, ss.baseDrift), append(bc, ss.baseClean)
		fineTunes += ss.fineTuneCount
	}
	cr.BaseDrifted, cr.BaseClean = stat(bd), stat(bc)
	// jobs[seed][arm][budget] → the points.
	at := func(seed, arm, bi int) *job { return jobs[(seed*len(arms)+arm)*len(o.Budgets)+bi] }
	for a, spec := range arms {
		arm := Arm{Strategy: spec.st.Name, Dedup: spec.dedup}
		for bi, b := range o.Budgets {
			var dr, cl, diff []float64
			var uploads, wrong, repeats, param float64
			for seed := range o.Seeds {
				j, r := at(seed, a, bi), at(seed, 0, bi) // arm 0: random without dedup
				dr, cl, diff = append(dr, j.acc.drifted), append(cl, j.acc.clean), append(diff, j.acc.drifted-r.acc.drifted)
				uploads += float64(len(j.uploads))
				param += j.param
				s, seen := setups[seed].stream, map[int]bool{}
				for _, i := range j.uploads {
					if s.wrong[i] {
						wrong++
					}
					if seen[s.item[i]] {
						repeats++
					}
					seen[s.item[i]] = true
				}
			}
			n := float64(o.Seeds)
			arm.Points = append(arm.Points, Point{Budget: b, Uploads: uploads / n, Drifted: stat(dr), Clean: stat(cl), VsRandom: stat(diff),
				Wrong: wrong / max(uploads, 1), Repeats: repeats / max(uploads, 1), Param: param / n})
		}
		cr.Arms = append(cr.Arms, arm)
	}
	cr.Target = cr.Arms[0].Points[len(o.Budgets)-1].Drifted.Mean
	for i := range cr.Arms {
		cr.Arms[i].UploadsToTarget = uploadsTo(cr.Arms[i].Points, cr.Target)
	}
	logger.Info("condition done", "condition", c.Name, "fine_tunes", fineTunes, "jobs", len(jobs), "took", time.Since(start).Round(time.Second))
	return cr, nil
}

// uploadsTo is where the mean curve first reaches target, linear in log(uploads) between
// points; 0 when it never does.
func uploadsTo(ps []Point, target float64) float64 {
	for i, p := range ps {
		if p.Drifted.Mean < target {
			continue
		}
		if i == 0 {
			return p.Uploads
		}
		q := ps[i-1]
		f := (target - q.Drifted.Mean) / (p.Drifted.Mean - q.Drifted.Mean)
		return math.Exp(math.Log(q.Uploads) + f*(math.Log(p.Uploads)-math.Log(q.Uploads)))
	}
	return 0
}

func mixName(mix []float64) string {
	if mix == nil {
		return "uniform"
	}
	names := fmnist.ClassNames()
	var parts []string
	for _, c := range confusable {
		parts = append(parts, names[c])
	}
	return strconv.Itoa(int(math.Round(100*mix[confusable[0]]*float64(len(confusable))))) + "% " + strings.Join(parts, ", ") + " (uniform otherwise)"
}
