package trainer

import (
	"fmt"

	"github.com/edgeloop/edgeloop/internal/classify"
)

// HistogramBins is the number of equal-width bins over [0, 1] of the reference confidence
// histograms, the exporter's default drift.bins (classify.HistogramBins).
const HistogramBins = classify.HistogramBins

// Metrics is metrics.json, the evaluation a training job hands back under the job contract.
// Confidences are scored exactly as the exporter scores live predictions (internal/classify),
// so the histograms are the reference its drift detection compares live traffic with.
type Metrics struct {
	Model       string `json:"model"`
	BaseVersion string `json:"base_version,omitempty"`
	// Accuracy is top-1 accuracy on the evaluation split.
	Accuracy float64 `json:"accuracy"`
	// PerClassAccuracy is each class's recall: correct predictions among its images.
	PerClassAccuracy map[string]float64 `json:"per_class_accuracy"`
	// Loss is the mean softmax cross-entropy on the evaluation split.
	Loss float64 `json:"loss"`
	// ConfidenceScorer names the scorer of ConfidenceHistogram: "max_softmax".
	ConfidenceScorer string `json:"confidence_scorer"`
	// ConfidenceHistogram is the share of evaluation images per confidence bin (HistogramBins
	// equal bins over [0, 1], the last one closed) by ConfidenceScorer; it sums to 1.
	ConfidenceHistogram []float64 `json:"confidence_histogram"`
	// ConfidenceHistograms has the same histogram for each of the exporter's scorers, so an
	// exporter configured with another scorer has its reference too.
	ConfidenceHistograms map[string][]float64 `json:"confidence_histograms"`
	// MeanConfidence is the mean top-1 probability on the evaluation split: what the
	// exporter's estimated accuracy reads when live traffic looks like the evaluation data.
	MeanConfidence float64  `json:"mean_confidence"`
	Classes        []string `json:"classes"`
	// EvalSplit is "test" or the held-out fraction; TrainSize and EvalSize count images.
	EvalSplit string      `json:"eval_split"`
	TrainSize int         `json:"train_size"`
	EvalSize  int         `json:"eval_size"`
	Samples   SampleStats `json:"samples"`
	// InputShape is one input's shape without the batch dimension, as the data gave it (the
	// model's input is [batch, product of InputShape]).
	InputShape []int64 `json:"input_shape,omitempty"`
	// RejectedByReason counts the refused samples by reason (Samples.RejectedByReason).
	RejectedByReason map[string]int `json:"rejected_by_reason,omitempty"`
	// Datasets are file:// URIs of the data trained on: the IDX directory and every
	// shard read (the model manifest's dataset references).
	Datasets []string `json:"datasets"`
	// The settings of the run.
	Epochs       int     `json:"epochs"`
	Seed         uint64  `json:"seed"`
	Hidden       []int   `json:"hidden"`
	BatchSize    int     `json:"batch_size"`
	LearningRate float64 `json:"learning_rate"`
	// TrainLoss and TrainAccuracy are those of the last epoch's mini-batches.
	TrainLoss     float64 `json:"train_loss"`
	TrainAccuracy float64 `json:"train_accuracy"`
	// DurationSeconds is the wall time of training and evaluation, without loading data.
	DurationSeconds float64      `json:"duration_seconds"`
	History         []EpochStats `json:"history"`
}

// evalChunk is how many images evaluate runs through the network at once.
const evalChunk = 1000

// evaluate runs ds through net and measures accuracy, loss and confidence histograms.
func evaluate(net *Network, ds *Examples, classes []string, workers int) (Metrics, error) {
	scorers := []classify.Scorer{classify.MaxSoftmax, classify.Margin, classify.Entropy}
	counts := make([][HistogramBins]int, len(scorers))
	k := net.Classes()
	perClass, perClassRight := make([]int, k), make([]int, k)
	var loss, confSum float64
	right := 0
	acts := [][]float32{nil}
	for _, l := range net.Layers {
		acts = append(acts, make([]float32, evalChunk*l.Out))
	}
	for start := 0; start < ds.Len(); start += evalChunk {
		rows := min(evalChunk, ds.Len()-start)
		acts[0] = ds.Inputs[start*ds.Width : (start+rows)*ds.Width]
		for i := range net.Layers {
			forward(&net.Layers[i], acts[i], acts[i+1], rows, workers, i < len(net.Layers)-1)
		}
		logits := acts[len(net.Layers)]
		for r := range rows {
			z := logits[r*k : (r+1)*k]
			label := ds.Labels[start+r]
			s, err := classify.Score(z, classify.Logits)
			if err != nil {
				return Metrics{}, fmt.Errorf("evaluate image %d: %w", start+r, err)
			}
			loss += classify.CrossEntropy(z, label, 1)
			perClass[label]++
			if s.Class == label {
				right++
				perClassRight[label]++
			}
			confSum += s.MaxSoftmax
			for i, sc := range scorers {
				counts[i][classify.HistogramBin(s.Confidence(sc), HistogramBins)]++
			}
		}
	}
	n := float64(ds.Len())
	m := Metrics{
		Accuracy:             float64(right) / n,
		Loss:                 loss / n,
		PerClassAccuracy:     map[string]float64{},
		ConfidenceScorer:     string(classify.MaxSoftmax),
		ConfidenceHistograms: map[string][]float64{},
		MeanConfidence:       confSum / n,
		Classes:              classes,
	}
	for c, name := range classes {
		if perClass[c] > 0 { // a class absent from a small held-out split has no accuracy
			m.PerClassAccuracy[name] = float64(perClassRight[c]) / float64(perClass[c])
		}
	}
	for i, sc := range scorers {
		h := make([]float64, HistogramBins)
		for b, c := range counts[i] {
			h[b] = float64(c) / n
		}
		m.ConfidenceHistograms[string(sc)] = h
	}
	m.ConfidenceHistogram = m.ConfidenceHistograms[string(classify.MaxSoftmax)]
	return m, nil
}
