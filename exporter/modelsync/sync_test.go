package modelsync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edgeloop/edgeloop/exporter/infer"
	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/exporter/runtime/upstream"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/onnx"
	"github.com/edgeloop/edgeloop/internal/runtime/builtin/builtintest"
	"github.com/edgeloop/edgeloop/internal/web"
)

// tinyRequest is two rows of the tiny model's input: classes 2 and 0.
const tinyRequest = `{"inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[[1,2,4,1],[3,-1,0,2]]}]}`

// fixture is a local model repository with a trusted signer, an inference front and the
// pieces a Syncer reports to.
type fixture struct {
	t       *testing.T
	repoDir string
	repo    *modelrepo.Repository
	signer  *modelrepo.Signer
	cfg     Config
	model   infer.ModelConfig
	front   *infer.Server
	http    *httptest.Server
	core    *observe.Core
	reg     *prometheus.Registry
	ready   *web.Readiness
	onnx    []byte
	syncer  *Syncer
	keysDir string
}

func newFixture(t *testing.T, selector string) *fixture {
	t.Helper()
	f := &fixture{t: t, repoDir: t.TempDir(), keysDir: t.TempDir(), reg: prometheus.NewRegistry(), ready: web.NewReadiness()}
	keys, err := modelrepo.GenerateKey(f.keysDir)
	if err != nil {
		t.Fatal(err)
	}
	if f.signer, err = modelrepo.LoadSigner(keys.Private); err != nil {
		t.Fatal(err)
	}
	bucket, err := objstore.NewFS(f.repoDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bucket.Close() })
	f.repo = modelrepo.New(bucket)
	if f.onnx, err = onnx.Encode(builtintest.Tiny()); err != nil {
		t.Fatal(err)
	}
	f.cfg = DefaultConfig()
	f.cfg.Repository = "file://" + f.repoDir
	f.cfg.TrustedKeys = []string{keys.Public}
	f.cfg.CacheDir = filepath.Join(t.TempDir(), "cache")
	f.cfg.PollInterval = time.Second
	f.model = infer.ModelConfig{Name: "tiny", Version: selector}
	f.front, err = infer.NewServer(infer.DefaultConfig(), infer.Options{Models: []string{"tiny"}})
	if err != nil {
		t.Fatal(err)
	}
	f.http = httptest.NewServer(f.front.Handler())
	t.Cleanup(f.http.Close)
	if f.core, err = observe.New(f.reg, observe.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	return f
}

// start builds the Syncer; each fixture builds one, except tests of restarts.
func (f *fixture) start() *Syncer {
	f.t.Helper()
	s, err := New(context.Background(), f.cfg, []infer.ModelConfig{f.model}, Options{
		Server: f.front, Observe: f.core, Registerer: f.reg, Readiness: f.ready,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(s.Close)
	f.syncer = s
	return s
}

func draft() modelrepo.Manifest {
	return modelrepo.Manifest{
		Classes:            builtintest.TinyClasses(),
		Input:              modelrepo.Tensor{Name: "input", Datatype: "FP32", Shape: []int64{-1, 4}},
		Output:             modelrepo.Output{Name: "logits", Kind: modelrepo.OutputLogits},
		SecondOutput:       &modelrepo.Output{Name: "probabilities", Kind: modelrepo.OutputProbabilities},
		ReferenceHistogram: []float64{0, 0, 0, 0, 0, 1, 2, 3, 4, 10},
		ReferenceScorer:    "max_softmax",
	}
}

func (f *fixture) publishWith(version int64, signer *modelrepo.Signer) {
	f.t.Helper()
	_, err := f.repo.Publish(context.Background(), "tiny", draft(),
		[]modelrepo.File{modelrepo.BytesFile(modelrepo.ModelFile, f.onnx)}, signer, modelrepo.PublishOptions{Version: version})
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) publish(version int64) { f.t.Helper(); f.publishWith(version, f.signer) }

// attempt runs one sync of the fixture's model.
func (f *fixture) attempt() error {
	return f.syncer.attempt(context.Background(), f.syncer.models[0])
}

// infer sends the tiny request and returns the status and the version that answered.
func (f *fixture) infer() (int, string) {
	resp, err := http.Post(f.http.URL+"/v2/models/tiny/infer", "application/json", strings.NewReader(tinyRequest))
	if err != nil {
		f.t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	var body struct {
		Version string `json:"model_version"`
		Outputs []struct {
			Name string    `json:"name"`
			Data []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		f.t.Errorf("decode response: %v", err)
	}
	return resp.StatusCode, body.Version
}

func (f *fixture) serving() string {
	v, _ := f.front.Serving("tiny")
	return v
}

// cached lists the version directories in the model's cache.
func (f *fixture) cached() []string {
	f.t.Helper()
	entries, err := os.ReadDir(filepath.Join(f.cfg.CacheDir, "tiny"))
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestLatestFollowsNewVersionsAndPrunesCache(t *testing.T) {
	f := newFixture(t, "")
	f.start()
	if err := f.attempt(); !errors.Is(err, modelrepo.ErrVersionNotFound) {
		t.Fatalf("sync of an empty repository = %v, want ErrVersionNotFound", err)
	}
	if got := f.ready.Reasons(); len(got) != 1 || !strings.Contains(got[0], "model tiny: no version loaded: ") {
		t.Fatalf("readiness = %q, want the model not ready with the reason", got)
	}
	if code, _ := f.infer(); code != http.StatusServiceUnavailable {
		t.Fatalf("infer before any version = %d, want 503", code)
	}

	f.publish(1)
	if err := f.attempt(); err != nil {
		t.Fatal(err)
	}
	if code, v := f.infer(); code != 200 || v != "1" {
		t.Fatalf("infer = %d from version %q, want 200 from 1", code, v)
	}
	if got := f.ready.Reasons(); len(got) != 0 {
		t.Fatalf("readiness after load = %q, want ready", got)
	}
	man, err := f.repo.UnverifiedManifest(context.Background(), "tiny", 1)
	if err != nil {
		t.Fatal(err)
	}
	sha := man.Files[modelrepo.ModelFile].SHA256
	if got := testutil.ToFloat64(f.syncer.metrics.info.WithLabelValues("tiny", "1", sha)); got != 1 {
		t.Fatalf("edgeloop_model_info{version=1} = %g, want 1", got)
	}

	for v := int64(2); v <= 3; v++ {
		f.publish(v)
		if err := f.attempt(); err != nil {
			t.Fatal(err)
		}
		if code, got := f.infer(); code != 200 || got != fmt.Sprint(v) {
			t.Fatalf("infer = %d from version %q, want 200 from %d", code, got, v)
		}
	}
	if got := f.cached(); !slices.Equal(got, []string{"2", "3"}) {
		t.Fatalf("cache holds %v, want the serving version and the one before: [2 3]", got)
	}
	if n := testutil.CollectAndCount(f.syncer.metrics.info); n != 1 {
		t.Fatalf("edgeloop_model_info has %d series, want only the serving version's", n)
	}
	if got := testutil.ToFloat64(f.syncer.metrics.loads.WithLabelValues("tiny")); got != 3 {
		t.Fatalf("loads = %g, want 3", got)
	}
	// Unchanged: the hint answers "not modified" and nothing is loaded again.
	if err := f.attempt(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(f.syncer.metrics.loads.WithLabelValues("tiny")); got != 3 {
		t.Fatalf("loads after an unchanged poll = %g, want 3", got)
	}
}

// TestRetiredVersionRollsBack deletes the newest version's manifest, which retires it: the
// periodic listing finds the version below even though the latest hint did not change.
func TestRetiredVersionRollsBack(t *testing.T) {
	f := newFixture(t, "latest")
	f.publish(1)
	f.publish(2)
	f.start()
	if err := f.attempt(); err != nil || f.serving() != "2" {
		t.Fatalf("first sync: %v, serving %q", err, f.serving())
	}
	if err := f.repo.Bucket().Delete(context.Background(), modelrepo.ManifestKey("tiny", 2)); err != nil {
		t.Fatal(err)
	}
	for range listEvery {
		if err := f.attempt(); err != nil {
			t.Fatal(err)
		}
	}
	if f.serving() != "1" {
		t.Fatalf("serving %q after %d polls, want the version below the retired one", f.serving(), listEvery)
	}
}

func TestAliasAndPinnedSelectors(t *testing.T) {
	f := newFixture(t, "stable")
	ctx := context.Background()
	f.publish(1)
	f.publish(2)
	f.start()
	if err := f.attempt(); !errors.Is(err, modelrepo.ErrAliasNotFound) {
		t.Fatalf("sync without the alias = %v, want ErrAliasNotFound", err)
	}
	if got := testutil.ToFloat64(f.syncer.metrics.failures.WithLabelValues("tiny", "alias_not_found")); got != 1 {
		t.Fatalf("failures{alias_not_found} = %g, want 1", got)
	}
	for _, v := range []int64{2, 1, 2} { // forward, rollback, forward again (from the cache)
		if err := f.repo.SetAlias(ctx, "tiny", "stable", v); err != nil {
			t.Fatal(err)
		}
		if err := f.attempt(); err != nil {
			t.Fatal(err)
		}
		if f.serving() != fmt.Sprint(v) {
			t.Fatalf("alias at %d, serving %q", v, f.serving())
		}
	}

	p := newFixture(t, "1")
	p.publish(1)
	p.publish(2)
	p.start()
	if err := p.attempt(); err != nil || p.serving() != "1" {
		t.Fatalf("pinned to 1: %v, serving %q", err, p.serving())
	}
}

// TestRefusedVersionsKeepTheOldOneServing publishes a good version 1, then a version 2
// broken in each way an attacker or a fault could break it: each is refused with its reason,
// counted, leaves nothing in the cache, and version 1 keeps answering.
func TestRefusedVersionsKeepTheOldOneServing(t *testing.T) {
	ctx := context.Background()
	rewrite := func(f *fixture, key string, change func([]byte) []byte) {
		data, _, err := objstore.ReadAll(ctx, f.repo.Bucket(), key, 1<<24)
		if err != nil {
			t.Fatal(err)
		}
		data = change(data)
		if err := f.repo.Bucket().Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	editManifest := func(edit func(m map[string]any)) func([]byte) []byte {
		return func(data []byte) []byte {
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			edit(m)
			out, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
	for _, c := range []struct {
		name, reason string
		selector     string
		break2       func(f *fixture)
	}{
		{"one byte changed", "digest_mismatch", "", func(f *fixture) {
			f.publish(2)
			rewrite(f, modelrepo.FileKey("tiny", 2, modelrepo.ModelFile), func(b []byte) []byte { b[len(b)/2] ^= 1; return b })
		}},
		{"wrong key", "unknown_key", "", func(f *fixture) {
			keys, err := modelrepo.GenerateKey(filepath.Join(t.TempDir(), "other"))
			if err != nil {
				t.Fatal(err)
			}
			other, err := modelrepo.LoadSigner(keys.Private)
			if err != nil {
				t.Fatal(err)
			}
			f.publishWith(2, other)
		}},
		{"no manifest", "no_manifest", "stable", func(f *fixture) {
			f.publish(2)
			if err := f.repo.Bucket().Delete(ctx, modelrepo.ManifestKey("tiny", 2)); err != nil {
				t.Fatal(err)
			}
			alias := []byte(`{"version":2}`)
			if err := f.repo.Bucket().Put(ctx, modelrepo.AliasKey("tiny", "stable"), bytes.NewReader(alias), int64(len(alias))); err != nil {
				t.Fatal(err)
			}
		}},
		{"manifest without signature", "no_signature", "", func(f *fixture) {
			f.publish(2)
			rewrite(f, modelrepo.ManifestKey("tiny", 2), editManifest(func(m map[string]any) { delete(m, "signature") }))
		}},
		{"manifest changed after signing", "bad_signature", "", func(f *fixture) {
			f.publish(2)
			rewrite(f, modelrepo.ManifestKey("tiny", 2), editManifest(func(m map[string]any) { m["classes"] = []string{"a", "b", "c"} }))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.selector)
			f.publish(1)
			if c.selector != "" {
				if err := f.repo.SetAlias(ctx, "tiny", c.selector, 1); err != nil {
					t.Fatal(err)
				}
			}
			f.start()
			if err := f.attempt(); err != nil {
				t.Fatal(err)
			}
			c.break2(f)
			err := f.attempt()
			if Reason(err) != c.reason {
				t.Fatalf("sync = %v (reason %q), want reason %q", err, Reason(err), c.reason)
			}
			if code, v := f.infer(); code != 200 || v != "1" {
				t.Fatalf("infer = %d from %q, want 200 from version 1", code, v)
			}
			if got := testutil.ToFloat64(f.syncer.metrics.failures.WithLabelValues("tiny", c.reason)); got != 1 {
				t.Fatalf("failures{reason=%q} = %g, want 1", c.reason, got)
			}
			if got := f.cached(); !slices.Equal(got, []string{"1"}) {
				t.Fatalf("cache holds %v, want only version 1", got)
			}
			if got := f.ready.Reasons(); len(got) != 0 {
				t.Fatalf("readiness = %q: a refused update must not make a serving exporter unready", got)
			}
		})
	}
}

// TestRestartServesFromCache starts a second Syncer on the same cache with the repository
// gone: it serves the cached version at once. A tampered cache is not served.
func TestRestartServesFromCache(t *testing.T) {
	f := newFixture(t, "")
	f.publish(1)
	f.publish(2)
	f.start()
	if err := f.attempt(); err != nil {
		t.Fatal(err)
	}
	f.syncer.Close()

	restart := func() *fixture {
		g := newFixture(t, "")
		g.cfg = f.cfg
		g.cfg.Repository = "file://" + filepath.Join(t.TempDir(), "gone")
		g.start()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { g.syncer.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		return g
	}
	g := restart()
	waitFor(t, func() bool { return g.serving() == "2" }, "the cached version 2 to serve")
	if code, v := g.infer(); code != 200 || v != "2" {
		t.Fatalf("infer = %d from %q, want 200 from 2", code, v)
	}

	// One byte changed in the cached model: verification fails, the repository is gone, so
	// the exporter stays unready rather than serve it.
	path := filepath.Join(f.cfg.CacheDir, "tiny", "2", modelrepo.ModelFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	h := restart()
	waitFor(t, func() bool {
		r := h.ready.Reasons()
		return len(r) == 1 && strings.Contains(r[0], "no version loaded: ")
	}, "the tampered cache to be refused")
	if h.serving() != "" {
		t.Fatalf("serving %q from a tampered cache", h.serving())
	}
}

// TestRunServesNewVersionWithinOnePoll runs the real loop: a version published while it runs
// serves within one poll interval (plus its jitter and the load).
func TestRunServesNewVersionWithinOnePoll(t *testing.T) {
	f := newFixture(t, "")
	f.cfg.Jitter = 0.1
	f.publish(1)
	f.start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.syncer.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { return f.serving() == "1" }, "version 1")
	f.publish(2)
	published := time.Now()
	waitFor(t, func() bool { return f.serving() == "2" }, "version 2")
	if took, limit := time.Since(published), f.cfg.PollInterval*11/10+time.Second; took > limit {
		t.Fatalf("version 2 served %s after publishing, want within one poll interval (%s)", took, limit)
	}
}

// TestSwapUnderLoad hot-swaps versions while clients send requests: none fails.
func TestSwapUnderLoad(t *testing.T) {
	f := newFixture(t, "")
	f.publish(1)
	f.start()
	if err := f.attempt(); err != nil {
		t.Fatal(err)
	}
	var failed, served atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if code, _ := f.infer(); code != 200 {
					failed.Add(1)
				}
				served.Add(1)
			}
		})
	}
	for v := int64(2); v <= 6; v++ {
		f.publish(v)
		if err := f.attempt(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || served.Load() == 0 {
		t.Fatalf("%d of %d requests failed during 5 swaps, want 0", failed.Load(), served.Load())
	}
	if f.serving() != "6" {
		t.Fatalf("serving %q, want 6", f.serving())
	}
}

// TestUpstreamMode checks that a version is written into the upstream server's model
// repository in Triton's layout, with a version policy naming it, before the server is asked
// to load it; and that requests then reach the server.
func TestUpstreamMode(t *testing.T) {
	f := newFixture(t, "")
	tritonRepo := t.TempDir()
	var loads []string
	var mu sync.Mutex
	triton := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v2/repository/models/tiny_onnx/load":
			conf, err := os.ReadFile(filepath.Join(tritonRepo, "tiny_onnx", "config.pbtxt"))
			mu.Lock()
			loads = append(loads, string(conf))
			mu.Unlock()
			if err != nil {
				http.Error(w, `{"error":"no config"}`, http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v2/models/tiny_onnx"):
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"model_name":"tiny_onnx","model_version":"2","outputs":[{"name":"logits","datatype":"FP32","shape":[1,3],"data":[0.1,0.2,3]}]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer triton.Close()
	ucfg := upstream.Config{URL: triton.URL, Model: "tiny_onnx", ModelRepository: tritonRepo}
	f.model = infer.ModelConfig{Name: "tiny", Runtime: infer.RuntimeUpstream, Upstream: &ucfg}
	f.publish(1)
	f.publish(2)
	f.start()
	if err := f.attempt(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{modelrepo.ModelFile, modelrepo.ConfigFile} {
		if _, err := os.Stat(filepath.Join(tritonRepo, "tiny_onnx", "2", name)); err != nil {
			t.Fatalf("upstream repository: %v", err)
		}
	}
	mu.Lock()
	conf := loads[len(loads)-1]
	mu.Unlock()
	if !strings.Contains(conf, "version_policy: { specific: { versions: [ 2 ] } }") || strings.Contains(conf, `name: "tiny"`) {
		t.Fatalf("config.pbtxt at load time:\n%s\nwant a version policy for 2 and no name line", conf)
	}
	if code, v := f.infer(); code != 200 || v != "2" {
		t.Fatalf("infer = %d from %q, want 200 from version 2", code, v)
	}

	// The server refuses the next version: the old one keeps serving, reason "load".
	triton.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"failed to load 'tiny_onnx' version 3: out of memory"}`, http.StatusBadRequest)
	})
	f.publish(3)
	if err := f.attempt(); Reason(err) != "load" || !strings.Contains(err.Error(), "out of memory") {
		t.Fatalf("sync with a refusing upstream = %v (reason %q), want reason load and the server's message", err, Reason(err))
	}
	if f.serving() != "2" {
		t.Fatalf("serving %q, want 2", f.serving())
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
