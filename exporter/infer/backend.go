package infer

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/exporter/runtime/upstream"
	"github.com/edgeloop/edgeloop/internal/runtime/builtin"
)

// BackendConfig is what one model version is served with.
type BackendConfig struct {
	// Version is the version being served, as in /v2/models/{m}/versions/{version}.
	Version string
	// Builtin runs the model in the exporter. Exactly one of Builtin and Upstream is set.
	Builtin *builtin.Model
	// Upstream forwards to an upstream V2 server. The client may be shared by the versions of
	// a model: retiring a Backend does not close it.
	Upstream *upstream.Client
	// Observe is the version's telemetry handle from observe.Core.Model; nil observes nothing.
	// The Backend owns it from now on: it is closed once the Backend is retired and drained.
	Observe *observe.Model
	// Output names the output tensor whose scores are observed.
	Output string
	// OutputKind says whether Output holds logits or probabilities.
	OutputKind observe.OutputKind
	// Classes names the classes of Output, in order (optional; the telemetry handle has its own).
	Classes []string
	// Embedding names the model's embedding output (the manifest's embedding_output); empty
	// for none. It feeds the telemetry's embedding signal. The built-in runtime leaves it out
	// of answers that do not ask for it by name (it is telemetry, not the prediction); an
	// upstream's answers pass unchanged, and feed the signal when they carry it.
	Embedding string
}

// Backend is one model version ready to serve: the unit that Server.Swap installs atomically.
//
// Every request holds a reference on the Backend it started with until it has written its
// response and observed its telemetry. When a Swap replaces it, the Backend is retired: new
// requests no longer take it, and once the last reference is dropped its telemetry handle is
// closed and Done is closed. So a swap never fails a request in flight, and no observation
// lands on a closed handle (where observe would count it nowhere).
type Backend struct {
	cfg      BackendConfig
	outIndex int // builtin: index of cfg.Output among the model's outputs
	embIndex int // builtin: index of cfg.Embedding among the model's outputs; -1 for none

	// state is the number of requests holding the Backend, plus retiredBit once it is retired.
	state atomic.Int64
	done  chan struct{}
}

const retiredBit = int64(1) << 62

// NewBackend checks cfg and returns a Backend to pass to Server.Swap.
func NewBackend(cfg BackendConfig) (*Backend, error) {
	b := &Backend{cfg: cfg, done: make(chan struct{}), outIndex: -1, embIndex: -1}
	b.cfg.Classes = slices.Clone(cfg.Classes)
	if err := b.check(); err != nil {
		return nil, fmt.Errorf("infer: version %q: %w", cfg.Version, err)
	}
	return b, nil
}

func (b *Backend) check() error {
	c := &b.cfg
	switch {
	case c.Version == "":
		return errors.New("version is empty")
	case (c.Builtin == nil) == (c.Upstream == nil):
		return errors.New("exactly one of Builtin and Upstream must be set")
	case c.Output == "":
		return errors.New("output tensor name is empty")
	case c.OutputKind != observe.Logits && c.OutputKind != observe.Probabilities:
		return fmt.Errorf("output kind must be logits or probabilities, got %s", c.OutputKind)
	}
	if len(c.Classes) > 0 {
		if err := checkClasses(c.Classes); err != nil {
			return err
		}
	}
	if c.Builtin == nil {
		return nil
	}
	names := make([]string, 0, len(c.Builtin.Outputs()))
	for i, o := range c.Builtin.Outputs() {
		names = append(names, o.Name)
		if c.Embedding != "" && o.Name == c.Embedding {
			b.embIndex = i
		}
		if o.Name != c.Output {
			continue
		}
		b.outIndex = i
		if n := len(c.Classes); n > 0 && (len(o.Shape) == 0 || o.Shape[len(o.Shape)-1] != int64(n)) {
			return fmt.Errorf("output %q has shape %v, which does not end in the %d classes", o.Name, o.Shape, n)
		}
	}
	if b.outIndex < 0 {
		return fmt.Errorf("the model has no output %q (its outputs: %v)", c.Output, names)
	}
	if c.Embedding != "" && (b.embIndex < 0 || b.embIndex == b.outIndex) {
		return fmt.Errorf("the model has no embedding output %q apart from the scored output (its outputs: %v)", c.Embedding, names)
	}
	return nil
}

// Version returns the version the Backend serves.
func (b *Backend) Version() string { return b.cfg.Version }

// Classes returns the class names of the scored output, as configured (nil when none).
func (b *Backend) Classes() []string { return slices.Clone(b.cfg.Classes) }

// Done is closed when the Backend has been retired by a Swap and its last request has
// finished; its telemetry handle is closed by then. Model sync waits on it before deleting
// the version's files or loading the same version again.
func (b *Backend) Done() <-chan struct{} { return b.done }

// Close releases a Backend that will not serve after all, such as one built by a model sync
// that then failed: it closes the telemetry handle (once no request holds the Backend) and
// Done. Swap retires the Backends it replaces by itself; closing one that is still installed
// makes its model answer 503 until the next Swap.
func (b *Backend) Close() { b.retire() }

// acquire takes a reference for a request; it fails once the Backend is retired.
func (b *Backend) acquire() bool {
	for {
		s := b.state.Load()
		if s&retiredBit != 0 {
			return false
		}
		if b.state.CompareAndSwap(s, s+1) {
			return true
		}
	}
}

// release drops a request's reference; the last one of a retired Backend finishes it.
func (b *Backend) release() {
	if b.state.Add(-1) == retiredBit {
		b.finish()
	}
}

// retire stops new requests from taking the Backend and finishes it when none holds it.
// Only the first call has an effect.
func (b *Backend) retire() {
	old := b.state.Or(retiredBit)
	if old == 0 {
		b.finish()
	}
}

func (b *Backend) finish() {
	if b.cfg.Observe != nil {
		b.cfg.Observe.Close()
	}
	close(b.done)
}
