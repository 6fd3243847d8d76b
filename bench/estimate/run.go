package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/demo"
	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/internal/classify"
	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/retrain/gate"
	trainer "github.com/edgeloop/edgeloop/trainers/go"
)

// options are the command's flags.
type options struct {
	DataDir    string
	Work       string
	TrainLimit int
	Epochs     int
	CalImages  int
	EvalImages int
	Seed       uint64
	Workers    int
	Out        string
	Families   []string
}

// Row is one drift condition's result.
type Row struct {
	Family string `json:"family"`
	Drift  string `json:"drift"`
	// Accuracy is the true top-1 accuracy on the drifted images.
	Accuracy float64 `json:"accuracy"`
	// Raw is the exporter's uncalibrated estimate (mean top-1 probability), Calibrated the
	// estimate with the gate's temperature from the logits output, CalibratedProbs the same
	// from the probabilities output (p^(1/T) renormalised).
	Raw             float64 `json:"raw_estimate"`
	Calibrated      float64 `json:"calibrated_estimate"`
	CalibratedProbs float64 `json:"calibrated_estimate_probabilities"`
	// The drift signals on the same window, as the exporter exports them.
	ConfidencePSI float64 `json:"confidence_psi"`
	ClassMixJS    float64 `json:"class_mix_js_distance"`
	MeanShift     float64 `json:"input_mean_shift"`
	StdRatio      float64 `json:"input_std_ratio"`
	SketchPSI     float64 `json:"input_sketch_psi_max"`
	// EmbeddingMMD is the mean, and EmbeddingMMDMax the largest, of the embedding distance
	// (edgeloop_embedding_mmd) over the disjoint windows of observe's default 256 embeddings
	// in the drifted images.
	EmbeddingMMD    float64 `json:"embedding_mmd"`
	EmbeddingMMDMax float64 `json:"embedding_mmd_max"`
	// ATC and ATCEntropy are Average Thresholded Confidence estimates (Garg et al., ICLR
	// 2022), computed here offline for comparison, not by the exporter: the share of the
	// window whose max-softmax (ATC) or negative entropy of the calibrated softmax
	// (ATCEntropy) exceeds the threshold at which that share equals the calibration set's
	// accuracy.
	ATC        float64 `json:"atc_estimate"`
	ATCEntropy float64 `json:"atc_entropy_estimate"`
}

// atc holds the ATC thresholds fitted on the calibration set.
type atc struct {
	temperature   float64
	maxConf, negH float64
}

// scoresOf returns each row's max-softmax and negative entropy of softmax(z/t).
func scoresOf(logits []float32, k int, t float64) (conf, negH []float64) {
	p := make([]float64, k)
	for i := 0; i < len(logits); i += k {
		classify.Softmax(logits[i:i+k], t, p)
		m, h := 0.0, 0.0
		for _, v := range p {
			m = max(m, v)
			if v > 0 {
				h -= v * math.Log(v)
			}
		}
		conf, negH = append(conf, m), append(negH, -h)
	}
	return conf, negH
}

// fitATC picks, for each score, the threshold above which the share of calibration samples
// equals the calibration accuracy.
func fitATC(logits []float32, k int, t, accuracy float64) atc {
	conf, negH := scoresOf(logits, k, t)
	q := func(v []float64) float64 {
		v = slices.Clone(v)
		slices.Sort(v)
		i := int(math.Round((1 - accuracy) * float64(len(v))))
		return v[min(max(i, 0), len(v)-1)]
	}
	return atc{temperature: t, maxConf: q(conf), negH: q(negH)}
}

// estimate returns the two ATC estimates on a window's logits.
func (a atc) estimate(logits []float32, k int) (maxConf, negH float64) {
	conf, h := scoresOf(logits, k, a.temperature)
	for i := range conf {
		if conf[i] > a.maxConf {
			maxConf++
		}
		if h[i] > a.negH {
			negH++
		}
	}
	return maxConf / float64(len(conf)), negH / float64(len(conf))
}

// Result is the whole run, written as JSON.
type Result struct {
	Options         options   `json:"options"`
	Temperature     float64   `json:"temperature"`
	ECEBefore       float64   `json:"ece_before"`
	ECEAfter        float64   `json:"ece_after"`
	CleanAccuracy   float64   `json:"calibration_set_accuracy"`
	TrainSeconds    float64   `json:"train_seconds"`
	Rows            []Row     `json:"rows"`
	ReferenceSample int       `json:"reference_samples"`
	Finished        time.Time `json:"finished"`
}

// run trains the reference model, has the gate measure and calibrate it on the first
// CalImages test images (which also gives the drift reference, as at publish), and then runs
// the next EvalImages test images through the model under each drift, feeding the scores and
// inputs to the exporter's telemetry core (exporter/observe) to read its estimates and
// signals over a window of exactly those images.
func run(ctx context.Context, o options, logger *slog.Logger) (*Result, error) {
	cfg := trainer.DefaultConfig()
	cfg.DataDir, cfg.TrainLimit, cfg.Epochs, cfg.Seed, cfg.Workers = o.DataDir, o.TrainLimit, o.Epochs, o.Seed, o.Workers
	start := time.Now()
	data, err := trainer.LoadData(cfg, logger)
	if err != nil {
		return nil, err
	}
	res, err := trainer.Train(ctx, cfg, data, logger)
	if err != nil {
		return nil, err
	}
	if err := trainer.WriteOutputs(o.Work, res, data, cfg); err != nil {
		return nil, err
	}
	out := &Result{Options: o, TrainSeconds: time.Since(start).Seconds()}

	test, err := fmnist.Load(o.DataDir, fmnist.Test)
	if err != nil {
		return nil, err
	}
	if o.CalImages+o.EvalImages > test.Len() {
		return nil, fmt.Errorf("%d calibration and %d evaluation images: the test split has %d", o.CalImages, o.EvalImages, test.Len())
	}
	labels := make([]int, test.Len())
	for i, l := range test.Labels {
		labels[i] = int(l)
	}
	spec := dataset.Spec{Shape: []int64{fmnist.Pixels}, Datatype: dataset.DatatypeFP32, Classes: data.Classes}
	model, err := gate.NewModel(gate.RoleCandidate, o.Work, nil)
	if err != nil {
		return nil, err
	}
	cal, err := gate.NewSet(spec, "calibration", test.Images[:o.CalImages*fmnist.Pixels], labels[:o.CalImages])
	if err != nil {
		return nil, err
	}
	sc, err := gate.Builtin{}.Score(ctx, cal, []gate.Model{model})
	if err != nil {
		return nil, err
	}
	report, err := gate.Measure(cal, sc[0], gate.MeasureOptions{Calibrate: true})
	if err != nil {
		return nil, err
	}
	if report.OutputKind != classify.Logits.String() || report.Calibration == nil || report.DriftReference == nil {
		return nil, fmt.Errorf("the gate scored output kind %s, calibration %v, drift reference %v: want logits and both", report.OutputKind, report.Calibration, report.DriftReference)
	}
	out.Temperature, out.ECEBefore, out.ECEAfter = report.Calibration.Temperature, report.ECE, report.Calibration.ECEAfter
	out.CleanAccuracy, out.ReferenceSample = report.Accuracy, report.DriftReference.Samples
	logger.Info("calibrated", "temperature", out.Temperature, "ece_before", out.ECEBefore, "ece_after", out.ECEAfter, "accuracy", report.Accuracy)

	thresholds := fitATC(sc[0].Values, len(data.Classes), out.Temperature, report.Accuracy)
	evalImages := test.Images[o.CalImages*fmnist.Pixels : (o.CalImages+o.EvalImages)*fmnist.Pixels]
	evalLabels := labels[o.CalImages : o.CalImages+o.EvalImages]
	drifted := make([]float32, len(evalImages))
	for i, d := range demo.ImageDrifts() {
		if len(o.Families) > 0 && !slices.Contains(o.Families, d.Kind.Family()) {
			continue
		}
		rng := rand.New(rand.NewPCG(o.Seed, uint64(i)))
		for j := range o.EvalImages {
			d.Apply(drifted[j*fmnist.Pixels:(j+1)*fmnist.Pixels], evalImages[j*fmnist.Pixels:(j+1)*fmnist.Pixels], rng)
		}
		set, err := gate.NewSet(spec, "drifted", drifted, evalLabels)
		if err != nil {
			return nil, err
		}
		sc, err := gate.Builtin{}.Score(ctx, set, []gate.Model{model})
		if err != nil {
			return nil, err
		}
		row, err := measure(d, set, sc[0], report)
		row.ATC, row.ATCEntropy = thresholds.estimate(sc[0].Values, len(data.Classes))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Name(), err)
		}
		logger.Info("drift", "drift", d.Name(), "accuracy", row.Accuracy, "raw", row.Raw, "calibrated", row.Calibrated)
		out.Rows = append(out.Rows, row)
	}
	out.Finished = time.Now().UTC()
	return out, nil
}

// measure feeds one drifted window through three telemetry cores: uncalibrated, calibrated on
// the logits output, and calibrated on the probabilities output.
func measure(d demo.ImageDrift, set *gate.Set, sc *gate.Scores, report *gate.Report) (Row, error) {
	n, k, logits := set.Len(), len(set.Spec.Classes), sc.Values
	row := Row{Family: d.Kind.Family(), Drift: d.Name()}
	correct := 0
	probs := make([]float32, len(logits))
	p := make([]float64, k)
	for i := range n {
		z := logits[i*k : (i+1)*k]
		s, err := classify.Score(z, classify.Logits)
		if err != nil {
			return row, err
		}
		if s.Class == set.Labels[i] {
			correct++
		}
		classify.Softmax(z, 1, p)
		for j := range p {
			probs[i*k+j] = float32(p[j])
		}
	}
	row.Accuracy = float64(correct) / float64(n)

	newCore := func(calibrated bool, kind observe.OutputKind, scores []float32) (observe.DriftState, error) {
		cfg := observe.DefaultConfig()
		cfg.Drift.Window = n
		cfg.Drift.CalibratedAccuracy = calibrated
		cfg.Drift.Signals = observe.Signals{ClassMix: true, Input: true}
		core, err := observe.New(prometheus.NewRegistry(), cfg)
		if err != nil {
			return observe.DriftState{}, err
		}
		m, err := core.Model(observe.ModelSpec{Name: "fashion", Version: "1", Classes: set.Spec.Classes, Output: kind,
			Reference: report.ConfidenceHistogram, ReferenceScorer: observe.Scorer(report.ConfidenceScorer),
			Temperature: report.Calibration.Temperature, DriftReference: report.DriftReference, InputShape: set.Spec.Shape})
		if err != nil {
			return observe.DriftState{}, err
		}
		defer m.Close()
		w := set.Width()
		for i := range n {
			m.Observe(context.Background(), observe.Observation{Outcome: observe.OutcomeSuccess,
				Scores: scores[i*k : (i+1)*k], Input: set.Inputs[i*w : (i+1)*w]})
		}
		return m.Drift(), nil
	}
	raw, err := newCore(false, observe.Logits, logits)
	if err != nil {
		return row, err
	}
	cal, err := newCore(true, observe.Logits, logits)
	if err != nil {
		return row, err
	}
	calP, err := newCore(true, observe.Probabilities, probs)
	if err != nil {
		return row, err
	}
	row.Raw, row.Calibrated, row.CalibratedProbs = raw.EstimatedAccuracy, cal.EstimatedAccuracy, calP.EstimatedAccuracy
	row.ConfidencePSI, row.ClassMixJS = cal.PSI, cal.ClassMixDistance
	if len(cal.InputMeanShift) == 1 {
		row.MeanShift, row.StdRatio = cal.InputMeanShift[0], cal.InputStdRatio[0]
	}
	for _, v := range cal.InputSketchPSI {
		row.SketchPSI = max(row.SketchPSI, v)
	}
	mmd, err := embeddingWindows(set, sc, report)
	if err != nil {
		return row, err
	}
	for _, v := range mmd {
		row.EmbeddingMMD += v / float64(len(mmd))
		row.EmbeddingMMDMax = max(row.EmbeddingMMDMax, v)
	}
	return row, nil
}

// embeddingWindows feeds the embeddings of sc to a telemetry core with the embedding signal on
// (its default window) and reads the distance after each disjoint window.
func embeddingWindows(set *gate.Set, sc *gate.Scores, report *gate.Report) ([]float64, error) {
	if report.DriftReference.Embedding == nil || sc.EmbeddingWidth == 0 {
		return nil, fmt.Errorf("the model has no embedding output or the reference no embedding")
	}
	cfg := observe.DefaultConfig()
	cfg.Drift.Signals = observe.Signals{Embedding: true}
	core, err := observe.New(prometheus.NewRegistry(), cfg)
	if err != nil {
		return nil, err
	}
	m, err := core.Model(observe.ModelSpec{Name: "fashion", Version: "1", Classes: set.Spec.Classes, Output: observe.Logits,
		DriftReference: report.DriftReference})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	const window = 256 // observe's default embedding_window
	k, w := len(set.Spec.Classes), sc.EmbeddingWidth
	var out []float64
	for i := range set.Len() {
		m.Observe(context.Background(), observe.Observation{Outcome: observe.OutcomeSuccess,
			Scores: sc.Values[i*k : (i+1)*k], Embedding: sc.Embedding[i*w : (i+1)*w]})
		if (i+1)%window == 0 {
			out = append(out, m.Drift().EmbeddingMMD)
		}
	}
	return out, nil
}

// mae is the mean absolute error of the raw, calibrated and ATC estimates over rows.
func mae(rows []Row) (raw, cal, atc, atcH float64) {
	for _, r := range rows {
		raw += math.Abs(r.Raw - r.Accuracy)
		cal += math.Abs(r.Calibrated - r.Accuracy)
		atc += math.Abs(r.ATC - r.Accuracy)
		atcH += math.Abs(r.ATCEntropy - r.Accuracy)
	}
	n := float64(len(rows))
	return raw / n, cal / n, atc / n, atcH / n
}
