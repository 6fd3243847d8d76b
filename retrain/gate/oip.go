package gate

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/internal/fsutil"
	"github.com/edgeloop/edgeloop/internal/httpjson"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
)

// ErrUnavailable marks evaluator failures that a retry may fix: the inference server or the
// job backend could not be reached, or a version did not become ready in time.
var ErrUnavailable = errors.New("evaluator unavailable")

func unavailable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnavailable, fmt.Sprintf(format, args...))
}

// headerContentLength is the Open Inference Protocol binary tensor extension's header: the
// length of the JSON part of a body whose tensors follow in binary.
const headerContentLength = "Inference-Header-Content-Length"

// maxResponseBytes bounds an inference response: a batch's scores are far smaller.
const maxResponseBytes = 256 << 20

// OIP is the evaluator that runs both versions on an Open Inference Protocol server (KServe V2,
// Triton, an edgeloop exporter): it makes them available under OIPConfig's two model names,
// sends the set in batches with binary tensor data, and unloads them.
type OIP struct {
	cfg    OIPConfig
	signer *modelrepo.Signer
	client *http.Client
	logger *slog.Logger
}

// NewOIP returns the oip evaluator. signer signs the versions published into the scratch
// repository in poll mode (the exporter following it must trust its key).
func NewOIP(cfg OIPConfig, signer *modelrepo.Signer, logger *slog.Logger) (*OIP, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("oip evaluator: %w", err)
	}
	if cfg.Mode == OIPModePoll && signer == nil {
		return nil, errors.New("oip evaluator: poll mode needs a signing key")
	}
	return &OIP{cfg: cfg, signer: signer, client: &http.Client{}, logger: logger.With("evaluator", EvaluatorOIP)}, nil
}

// Name returns "oip".
func (o *OIP) Name() string { return EvaluatorOIP }

// served is a model made available on the server.
type served struct {
	Model
	name    string
	version int64
}

// Score makes every model available, scores the set on each, and unloads them (triton mode).
func (o *OIP) Score(ctx context.Context, set *Set, models []Model) ([]*Scores, error) {
	if err := checkSet(set); err != nil {
		return nil, fmt.Errorf("oip evaluator: %w", err)
	}
	var all []served
	for _, m := range models {
		if err := checkModel(m, set); err != nil {
			return nil, fmt.Errorf("oip evaluator: %s: %w", m.Role, err)
		}
		name := o.cfg.CandidateName
		if m.Role == RoleCurrent {
			name = o.cfg.CurrentName
		}
		all = append(all, served{Model: m, name: name})
	}
	var err error
	switch o.cfg.Mode {
	case OIPModeTriton:
		err = o.loadTriton(ctx, all)
		defer o.unloadTriton(all)
	default:
		err = o.publishPoll(ctx, all)
	}
	if err != nil {
		return nil, fmt.Errorf("oip evaluator: %w", err)
	}
	out := make([]*Scores, 0, len(all))
	for _, s := range all {
		sc, err := o.score(ctx, set, s)
		if err != nil {
			return nil, fmt.Errorf("oip evaluator: %s (%s version %d): %w", s.Role, s.name, s.version, err)
		}
		out = append(out, sc)
	}
	return out, nil
}

// checkModel refuses, before anything is staged, a model whose manifest says its input or
// classes do not fit the set: a server would fail on every request, or worse, score the wrong
// classes.
func checkModel(m Model, set *Set) error {
	if m.Manifest == nil {
		return errors.New("no manifest")
	}
	if c := m.Manifest.Classes; len(c) > 0 && !slices.Equal(c, set.Spec.Classes) {
		return fmt.Errorf("model classes %q differ from the evaluation set's %q", c, set.Spec.Classes)
	}
	if _, err := fitShape(m.Manifest.Input.Name, m.Manifest.Input.Shape, set.Spec.Shape); err != nil {
		return err
	}
	return nil
}

// loadTriton writes each model into the server's repository directory in Triton's layout
// (<dir>/<name>/config.pbtxt, <dir>/<name>/1/model.onnx) and asks the server to load it.
func (o *OIP) loadTriton(ctx context.Context, all []served) error {
	for i := range all {
		s := &all[i]
		s.version = 1
		dir := filepath.Join(o.cfg.RepositoryDir, s.name)
		// A version left by an earlier run is replaced whole: Triton serves what it finds.
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, "1"), 0o755); err != nil {
			return err
		}
		if err := copyFile(filepath.Join(s.Dir, modelrepo.ModelFile), filepath.Join(dir, "1", modelrepo.ModelFile)); err != nil {
			return err
		}
		m := *s.Manifest
		m.Model, m.Version = s.name, 1
		if err := fsutil.WriteFileAtomic(filepath.Join(dir, modelrepo.ConfigFile), modelrepo.TritonConfig(&m, o.cfg.BatchSize), 0o644); err != nil {
			return err
		}
		if err := o.repository(ctx, s.name, "load"); err != nil {
			return err
		}
		o.logger.Info("model loaded", "role", s.Role, "name", s.name)
	}
	return nil
}

// unloadTriton unloads the models, with a context of its own: it runs when scoring failed too.
func (o *OIP) unloadTriton(all []served) {
	ctx, cancel := context.WithTimeout(context.Background(), o.cfg.RequestTimeout)
	defer cancel()
	for _, s := range all {
		if s.version == 0 {
			continue
		}
		if err := o.repository(ctx, s.name, "unload"); err != nil {
			o.logger.Warn("cannot unload a model", "name", s.name, "err", err)
		}
	}
}

func (o *OIP) repository(ctx context.Context, name, action string) error {
	ctx, cancel := context.WithTimeout(ctx, max(o.cfg.ReadyTimeout, o.cfg.RequestTimeout))
	defer cancel()
	u := strings.TrimRight(o.cfg.URL, "/") + "/v2/repository/models/" + name + "/" + action
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader("{}"))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := o.client.Do(req)
	if err != nil {
		return unavailable("%s %s: %v", action, name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode >= 500:
		return unavailable("%s %s: %s: %s", action, name, resp.Status, httpjson.Message(body))
	default:
		return fmt.Errorf("%s %s: %s: %s", action, name, resp.Status, httpjson.Message(body))
	}
}

// publishPoll publishes each model, signed, as the next version of its name in the scratch
// repository, then waits until the server answers ready for that version.
func (o *OIP) publishPoll(ctx context.Context, all []served) error {
	b, err := objstore.Open(ctx, o.cfg.ScratchBucket)
	if err != nil {
		return unavailable("scratch repository: %v", err)
	}
	defer b.Close()
	repo := modelrepo.New(b)
	for i := range all {
		s := &all[i]
		draft := *s.Manifest
		// The scratch repository holds only these copies: a parent version named by the
		// original would not exist there, and the manifest would be refused.
		draft.Signature, draft.Files, draft.Version, draft.Model, draft.ParentVersion = nil, nil, 0, s.name, 0
		draft.SchemaVersion = modelrepo.SchemaVersion
		path := filepath.Join(s.Dir, modelrepo.ModelFile)
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		files := []modelrepo.File{{Name: modelrepo.ModelFile, Size: st.Size(), Open: func() (io.ReadCloser, error) { return os.Open(path) }}}
		m, err := repo.Publish(ctx, s.name, draft, files, o.signer, modelrepo.PublishOptions{MaxBatchSize: o.cfg.BatchSize})
		if errors.Is(err, modelrepo.ErrInvalidManifest) {
			return fmt.Errorf("scratch repository: %w", err) // a retry would be refused the same way
		}
		if err != nil {
			return unavailable("scratch repository: %v", err)
		}
		if d := m.Files[modelrepo.ModelFile]; d.SHA256 != s.SHA256 {
			return fmt.Errorf("scratch repository: %s was published with sha256 %s, expected %s", s.name, d.SHA256, s.SHA256)
		}
		s.version = m.Version
		o.logger.Info("model published to the scratch repository", "role", s.Role, "name", s.name, "version", m.Version)
	}
	for _, s := range all {
		if err := o.waitReady(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// waitReady polls GET /v2/models/{name}/versions/{v}/ready until it answers 200, for at most
// ReadyTimeout.
func (o *OIP) waitReady(ctx context.Context, s served) error {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.ReadyTimeout)
	defer cancel()
	u := fmt.Sprintf("%s/v2/models/%s/versions/%d/ready", strings.TrimRight(o.cfg.URL, "/"), s.name, s.version)
	last := "no answer"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := o.client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				o.logger.Info("model ready", "name", s.name, "version", s.version)
				return nil
			}
			last = resp.Status
		} else if ctx.Err() == nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return unavailable("%s version %d was not ready within %s (last answer: %s): is the server's model_sync following %s under this name?",
				s.name, s.version, o.cfg.ReadyTimeout, last, o.cfg.ScratchBucket)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// score sends the set in batches and collects the scored output, and the embedding output
// when the model has one.
func (o *OIP) score(ctx context.Context, set *Set, s served) (*Scores, error) {
	shape, err := fitShape(s.Manifest.Input.Name, s.Manifest.Input.Shape, set.Spec.Shape)
	if err != nil {
		return nil, err
	}
	k, width := len(set.Spec.Classes), set.Width()
	sc := &Scores{Role: s.Role, ModelSHA256: s.SHA256, Output: s.Output, Kind: s.Kind, Values: make([]float32, 0, set.Len()*k)}
	u := fmt.Sprintf("%s/v2/models/%s/versions/%d/infer", strings.TrimRight(o.cfg.URL, "/"), s.name, s.version)
	outputs := []string{s.Output}
	if s.Embedding != "" {
		outputs = append(outputs, s.Embedding)
	}
	for lo := 0; lo < set.Len(); lo += o.cfg.BatchSize {
		hi := min(lo+o.cfg.BatchSize, set.Len())
		shape[0] = int64(hi - lo)
		body, jsonLen, err := inferRequest(s.Manifest.Input.Name, shape, set.Inputs[lo*width:hi*width], outputs)
		if err != nil {
			return nil, err
		}
		values, err := o.infer(ctx, u, body, jsonLen, outputs)
		if err != nil {
			return nil, fmt.Errorf("samples %d to %d: %w", lo, hi-1, err)
		}
		if len(values[0]) != (hi-lo)*k {
			return nil, fmt.Errorf("samples %d to %d: output %q has %d values for %d samples of %d classes", lo, hi-1, s.Output, len(values[0]), hi-lo, k)
		}
		sc.Values = append(sc.Values, values[0]...)
		if len(values) > 1 {
			if err := sc.addEmbedding(values[1], hi-lo); err != nil {
				return nil, fmt.Errorf("samples %d to %d: output %q: %w", lo, hi-1, s.Embedding, err)
			}
		}
	}
	return sc, nil
}

// wireTensor is a tensor of the protocol's JSON part.
type wireTensor struct {
	Name       string          `json:"name"`
	Datatype   string          `json:"datatype,omitempty"`
	Shape      []int64         `json:"shape,omitempty"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
}

// inferRequest encodes one request: the JSON part naming the input (binary_data_size) and
// asking for the outputs in binary, then the input's FP32 values, little-endian.
func inferRequest(input string, shape []int64, values []float32, outputs []string) ([]byte, int, error) {
	wanted := make([]wireTensor, len(outputs))
	for i, name := range outputs {
		wanted[i] = wireTensor{Name: name, Parameters: map[string]any{"binary_data": true}}
	}
	head, err := json.Marshal(struct {
		Inputs  []wireTensor `json:"inputs"`
		Outputs []wireTensor `json:"outputs"`
	}{
		Inputs:  []wireTensor{{Name: input, Datatype: "FP32", Shape: shape, Parameters: map[string]any{"binary_data_size": 4 * len(values)}}},
		Outputs: wanted,
	})
	if err != nil {
		return nil, 0, err
	}
	body := make([]byte, len(head), len(head)+4*len(values))
	copy(body, head)
	for _, v := range values {
		body = binary.LittleEndian.AppendUint32(body, math.Float32bits(v))
	}
	return body, len(head), nil
}

// infer sends one request and returns the values of each of outputs, in order.
func (o *OIP) infer(ctx context.Context, u string, body []byte, jsonLen int, outputs []string) ([][]float32, error) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(headerContentLength, strconv.Itoa(jsonLen))
	resp, err := o.client.Do(req)
	if err != nil {
		return nil, unavailable("infer: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, unavailable("infer: %v", err)
	}
	if len(data) > maxResponseBytes {
		return nil, fmt.Errorf("infer: response larger than %d bytes", maxResponseBytes)
	}
	switch {
	case resp.StatusCode >= 500:
		return nil, unavailable("infer: %s: %s", resp.Status, httpjson.Message(data))
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("infer: %s: %s", resp.Status, httpjson.Message(data))
	}
	headerLen := -1
	if h := resp.Header.Get(headerContentLength); h != "" {
		if headerLen, err = strconv.Atoi(h); err != nil || headerLen < 0 || headerLen > len(data) {
			return nil, fmt.Errorf("infer: %s %q does not fit a body of %d bytes", headerContentLength, h, len(data))
		}
	}
	values := make([][]float32, len(outputs))
	for i, name := range outputs {
		if values[i], err = parseOutput(data, headerLen, name); err != nil {
			return nil, err
		}
	}
	return values, nil
}

// parseOutput finds output in a response body and decodes its FP32 values, binary (the
// binary_data_size parameter, tensors' bytes in the order of the JSON part's outputs) or JSON.
// It is the subset of the protocol the gate asks for; exporter/runtime/oip has the full
// parser, which should move to internal/ so both share it.
func parseOutput(body []byte, headerLen int, output string) ([]float32, error) {
	jsonPart, rest := body, []byte(nil)
	if headerLen >= 0 {
		jsonPart, rest = body[:headerLen], body[headerLen:]
	}
	var msg struct {
		Outputs []wireTensor `json:"outputs"`
	}
	if err := json.Unmarshal(jsonPart, &msg); err != nil {
		return nil, fmt.Errorf("infer: response: %w", err)
	}
	for _, t := range msg.Outputs {
		var raw []byte
		size, isBinary := t.Parameters["binary_data_size"]
		if isBinary {
			n, ok := size.(float64)
			if !ok || n < 0 || n != math.Trunc(n) || int(n) > len(rest) || headerLen < 0 {
				return nil, fmt.Errorf("infer: output %q: binary_data_size %v does not fit the body", t.Name, size)
			}
			raw, rest = rest[:int(n)], rest[int(n):]
		}
		if t.Name != output {
			continue
		}
		if t.Datatype != "" && t.Datatype != "FP32" {
			return nil, fmt.Errorf("infer: output %q is %s, the gate reads FP32", t.Name, t.Datatype)
		}
		if isBinary {
			if len(raw)%4 != 0 {
				return nil, fmt.Errorf("infer: output %q: %d bytes is not a whole number of FP32 values", t.Name, len(raw))
			}
			v := make([]float32, len(raw)/4)
			for i := range v {
				v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
			return v, nil
		}
		var v []float32
		if err := json.Unmarshal(t.Data, &v); err != nil {
			return nil, fmt.Errorf("infer: output %q: %w", t.Name, err)
		}
		return v, nil
	}
	return nil, fmt.Errorf("infer: the response has no output %q", output)
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(dst, data, 0o644)
}
