package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeloop/edgeloop/internal/fmnist"
)

// imageKey identifies an input by its values, so the labeller can find the ground truth of a
// captured sample: the first 8 bytes of the SHA-256 of the float32 values, little endian.
type imageKey uint64

func keyOf(img []float32) imageKey {
	h := sha256.New()
	var b [4]byte
	for _, v := range img {
		binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
		h.Write(b[:])
	}
	return imageKey(binary.BigEndian.Uint64(h.Sum(nil)[:8]))
}

// Truth is what the traffic sent: input → test image, shared by the generators and the
// labeller (the annotators' "ground truth"), and the test images the labeller must never
// label (Withhold), on which a retrained model can be scored knowing it never trained on them.
type Truth struct {
	mu       sync.Mutex
	images   map[imageKey]int // → index in the test set
	withheld map[int]bool     // test images never labelled
}

// NewTruth returns an empty table.
func NewTruth() *Truth { return &Truth{images: map[imageKey]int{}, withheld: map[int]bool{}} }

// Withhold keeps the labeller from labelling these test images, clean or drifted: a training
// job only trains on labelled samples, so no retrained model has seen them.
func (t *Truth) Withhold(indexes []int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, i := range indexes {
		t.withheld[i] = true
	}
}

// Withheld reports whether test image index is never labelled.
func (t *Truth) Withheld(index int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.withheld[index]
}

func (t *Truth) remember(k imageKey, index int) {
	t.mu.Lock()
	t.images[k] = index
	t.mu.Unlock()
}

func (t *Truth) lookup(k imageKey) (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, ok := t.images[k]
	return i, ok
}

// Tally counts classified images.
type Tally struct {
	N, Correct int
	Confidence float64 // sum of top-1 probabilities
}

func (t *Tally) add(o Tally) { t.N += o.N; t.Correct += o.Correct; t.Confidence += o.Confidence }

func (t Tally) Accuracy() float64 {
	if t.N == 0 {
		return math.NaN()
	}
	return float64(t.Correct) / float64(t.N)
}

func (t Tally) MeanConfidence() float64 {
	if t.N == 0 {
		return math.NaN()
	}
	return t.Confidence / float64(t.N)
}

// phaseKey splits a node's totals by the answering version and whether the input drifted.
type phaseKey struct {
	version string
	drifted bool
}

// Generator replays Fashion-MNIST test images to one node's inference front, shifted by the
// drift once it is switched on, and keeps score.
type Generator struct {
	node    string
	front   string // base URL of the node's V2 API
	test    *fmnist.Dataset
	images  []int // the test images it replays, in order
	model   ModelIO
	truth   *Truth
	drift   ImageDrift
	rng     *rand.Rand // the drift's randomness (noise, occlusion), seeded by offset
	batch   int
	every   time.Duration
	offset  int
	client  *http.Client
	driftOn atomic.Bool

	mu      sync.Mutex
	window  Tally
	version string
	errors  int
	lastErr string
	totals  map[phaseKey]*Tally
	byImage map[phaseKey]map[int]*Tally // the same, per test image
}

// ModelIO is what the traffic and the labeller need to know of the served model, taken from
// its published manifest rather than assumed: the model's name, its input tensor's name and
// per-sample shape (without the batch dimension), and its number of classes.
type ModelIO struct {
	Name    string
	Input   string
	Shape   []int64
	Classes int
}

// Width is the number of values of one sample.
func (m ModelIO) Width() int {
	w := 1
	for _, d := range m.Shape {
		w *= int(d)
	}
	return w
}

// NewGenerator returns a generator for one node: batches of batch images, the test images
// numbered in images taken in turn from position offset on, every interval, to the V2 API at
// front (http://host:port) for the model m. Every image has fmnist.Pixels values, which must
// be m.Width().
func NewGenerator(node, front string, m ModelIO, test *fmnist.Dataset, images []int, tr *Truth, d ImageDrift, batch int, every time.Duration, offset int) *Generator {
	return &Generator{node: node, front: front, model: m, test: test, images: images, truth: tr, drift: d, batch: batch, every: every, offset: offset,
		rng:    rand.New(rand.NewPCG(uint64(offset), 0x5eed)),
		client: &http.Client{Timeout: 30 * time.Second}, totals: map[phaseKey]*Tally{}, byImage: map[phaseKey]map[int]*Tally{}}
}

// SetDrift switches the drift of the node's input stream on or off.
func (g *Generator) SetDrift(on bool) { g.driftOn.Store(on) }

// Version is the model version that answered last.
func (g *Generator) Version() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.version
}

// Run sends a batch every interval until ctx ends.
func (g *Generator) Run(ctx context.Context) {
	t := time.NewTicker(g.every)
	defer t.Stop()
	next := g.offset
	w := g.model.Width()
	buf := make([]float32, g.batch*w)
	idx := make([]int, g.batch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		drifted := g.driftOn.Load()
		for i := range g.batch {
			idx[i] = g.images[next%len(g.images)]
			next++
			img := buf[i*w : (i+1)*w]
			if drifted {
				g.drift.Apply(img, g.test.Image(idx[i]), g.rng)
			} else {
				copy(img, g.test.Image(idx[i]))
			}
			g.truth.remember(keyOf(img), idx[i])
		}
		version, probs, err := g.infer(ctx, buf)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			g.mu.Lock()
			g.errors++
			g.lastErr = err.Error()
			g.mu.Unlock()
			continue
		}
		g.score(version, probs, idx, drifted)
	}
}

// score adds a batch's answers to the window and the totals.
func (g *Generator) score(version string, probs []float32, idx []int, drifted bool) {
	k := phaseKey{version: version, drifted: drifted}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.totals[k] == nil {
		g.totals[k], g.byImage[k] = &Tally{}, map[int]*Tally{}
	}
	per := g.byImage[k]
	for i, index := range idx {
		row := probs[i*g.model.Classes : (i+1)*g.model.Classes]
		best := 0
		for c := range row {
			if row[c] > row[best] {
				best = c
			}
		}
		one := Tally{N: 1, Confidence: float64(row[best])}
		if best == int(g.test.Labels[index]) {
			one.Correct = 1
		}
		g.window.add(one)
		g.totals[k].add(one)
		if per[index] == nil {
			per[index] = &Tally{}
		}
		per[index].add(one)
	}
	g.version = version
}

// Take returns the window since the last take, and the version that answered last.
func (g *Generator) Take() (Tally, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.window
	g.window = Tally{}
	return w, g.version
}

// Requests is the number of images the node classified.
func (g *Generator) Requests() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, t := range g.totals {
		n += t.N
	}
	return n
}

// Total returns the node's totals for a version and drift state.
func (g *Generator) Total(version string, drifted bool) Tally {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t := g.totals[phaseKey{version, drifted}]; t != nil {
		return *t
	}
	return Tally{}
}

// TotalExcept returns the node's totals for a version and drift state over the test images
// skip does not name.
func (g *Generator) TotalExcept(version string, drifted bool, skip func(index int) bool) Tally {
	g.mu.Lock()
	defer g.mu.Unlock()
	var sum Tally
	for index, t := range g.byImage[phaseKey{version, drifted}] {
		if !skip(index) {
			sum.add(*t)
		}
	}
	return sum
}

// v2Response is the part of a KServe V2 inference answer the generator reads.
type v2Response struct {
	Version string `json:"model_version"`
	Outputs []struct {
		Name string    `json:"name"`
		Data []float32 `json:"data"`
	} `json:"outputs"`
	Error string `json:"error"`
}

// infer classifies the images in buf and returns the answering version and the
// probabilities, one row of the model's classes per image.
func (g *Generator) infer(ctx context.Context, buf []float32) (string, []float32, error) {
	n := len(buf) / g.model.Width()
	shape := append([]int64{int64(n)}, g.model.Shape...)
	body, err := json.Marshal(map[string]any{"inputs": []map[string]any{{
		"name": g.model.Input, "datatype": "FP32", "shape": shape, "data": buf,
	}}})
	if err != nil {
		return "", nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.front+"/v2/models/"+g.model.Name+"/infer", bytes.NewReader(body))
	if err != nil {
		return "", nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	var out v2Response
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", nil, fmt.Errorf("infer: %s: %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("infer: %s: %s", resp.Status, out.Error)
	}
	for _, o := range out.Outputs {
		if o.Name == "probabilities" && len(o.Data) == n*g.model.Classes {
			return out.Version, o.Data, nil
		}
	}
	return "", nil, fmt.Errorf("infer: no probabilities output of %d values", n*g.model.Classes)
}
