package infer

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/exporter/runtime/upstream"
)

// TestHotSwapUnderLoad swaps versions while clients infer without pause (run with -race): no
// request may fail, each answer must name a version that was swapped in, every retired version
// must drain and close its telemetry, and only the last version's series may remain.
func TestHotSwapUnderLoad(t *testing.T) {
	const clients, swaps = 8, 40
	core, reg := newCore(t)
	m := tinyModel(t)
	s, ts := serve(t, testConfig(), Options{Models: []string{"tiny"}})
	s.Swap("tiny", builtinBackend(t, m, core, "v0"))

	var stop atomic.Bool
	var served atomic.Int64
	swapped := sync.Map{} // versions swapped in so far
	swapped.Store("v0", true)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	for range clients {
		wg.Go(func() {
			for !stop.Load() {
				resp, err := client.Post(ts.URL+"/v2/models/tiny/infer", "application/json", strings.NewReader(tinyRequest))
				if err != nil {
					errs <- err
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("status %d: %s", resp.StatusCode, body)
					return
				}
				var out inferResponse // not decodeInfer: t.Fatal is for the test's own goroutine
				if err := json.Unmarshal(body, &out); err != nil {
					errs <- err
					return
				}
				if _, ok := swapped.Load(out.ModelVersion); !ok {
					errs <- fmt.Errorf("answer from version %q, which was never swapped in", out.ModelVersion)
					return
				}
				served.Add(1)
			}
		})
	}
	var retired []*Backend
	for i := 1; i <= swaps; i++ {
		v := fmt.Sprintf("v%d", i)
		swapped.Store(v, true) // before the swap: a response may name it as soon as it is in
		old := s.Swap("tiny", builtinBackend(t, m, core, v))
		if old == nil {
			t.Fatal("Swap returned no previous backend")
		}
		retired = append(retired, old)
		// Let some requests through on each version.
		for n := served.Load(); served.Load() < n+clients && len(errs) == 0; {
			runtime.Gosched()
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, b := range retired {
		select {
		case <-b.Done():
		default:
			t.Fatalf("version %s retired but not drained after all requests finished", b.Version())
		}
	}
	if versions := seriesVersions(t, reg); len(versions) != 1 || versions[0] != fmt.Sprintf("v%d", swaps) {
		t.Fatalf("series remain for versions %v, want only v%d", versions, swaps)
	}
	t.Logf("%d requests served across %d swaps", served.Load(), swaps)
}

// seriesVersions lists the versions that have inference series in reg.
func seriesVersions(t *testing.T, reg prometheus.Gatherer) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var vs []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if v := labelOf(m, "version"); v != "" && !slices.Contains(vs, v) {
				vs = append(vs, v)
			}
		}
	}
	slices.Sort(vs)
	return vs
}

// TestSwapDrainsInFlight holds a request inside the old version (its upstream does not answer
// yet), swaps, and checks the order of events: the new version serves at once, the old one
// keeps its telemetry until the held request finishes, which succeeds on the old version and
// is observed there, and only then is the old version closed.
func TestSwapDrainsInFlight(t *testing.T) {
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	up := fakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-release
		_, _ = w.Write([]byte(`{"model_version":"1","outputs":[{"name":"probabilities","datatype":"FP32","shape":[1,3],"data":[0.1,0.2,0.7]}]}`))
	})
	core, reg := newCore(t)
	s, ts := serve(t, testConfig(), Options{Models: []string{"tiny"}})
	old := upstreamBackend(t, up.URL, upstream.Config{}, core, "1", Options{})
	s.Swap("tiny", old)

	held := make(chan reply, 1)
	go func() { held <- do(t, "POST", ts.URL+"/v2/models/tiny/infer", tinyRequest, nil) }()
	<-arrived
	if prev := s.Swap("tiny", builtinBackend(t, tinyModel(t), core, "2")); prev != old {
		t.Fatalf("Swap returned %v, want the old backend", prev)
	}
	if r := decodeInfer(t, do(t, "POST", ts.URL+"/v2/models/tiny/infer", tinyRequest, nil)); r.ModelVersion != "2" {
		t.Fatalf("after the swap a new request got version %q", r.ModelVersion)
	}
	select {
	case <-old.Done():
		t.Fatal("old version closed while a request is still in it")
	default:
	}
	if vs := seriesVersions(t, reg); !slices.Equal(vs, []string{"1", "2"}) {
		t.Fatalf("series for versions %v while draining, want [1 2]", vs)
	}
	close(release)
	if r := <-held; r.status != http.StatusOK {
		t.Fatalf("held request: status %d: %s", r.status, r.body)
	}
	<-old.Done() // closed by the held request's release, before its response was written
	if vs := seriesVersions(t, reg); !slices.Equal(vs, []string{"2"}) {
		t.Fatalf("series for versions %v after draining, want [2]", vs)
	}
	if v, ok := s.Serving("tiny"); !ok || v != "2" {
		t.Fatalf("Serving = %q, %t", v, ok)
	}
}

// TestSwapUnload checks readiness around loading and unloading: 503 before the first version
// and after Swap(name, nil), 404 for names never configured.
func TestSwapUnload(t *testing.T) {
	s, ts := serve(t, testConfig(), Options{Models: []string{"tiny"}})
	for _, path := range []string{"/v2/health/ready", "/v2/models/tiny/ready"} {
		if r := do(t, "GET", ts.URL+path, "", nil); r.status != http.StatusServiceUnavailable {
			t.Fatalf("%s before load: %d", path, r.status)
		}
	}
	if r := do(t, "POST", ts.URL+"/v2/models/tiny/infer", tinyRequest, nil); r.status != http.StatusServiceUnavailable || !strings.Contains(errorOf(t, r), "no version loaded yet") {
		t.Fatalf("infer before load: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", ts.URL+"/v2/models/other/ready", "", nil); r.status != http.StatusNotFound {
		t.Fatalf("unknown model ready: %d", r.status)
	}
	b := builtinBackend(t, tinyModel(t), nil, "1")
	s.Swap("tiny", b)
	if r := do(t, "GET", ts.URL+"/v2/health/ready", "", nil); r.status != http.StatusOK {
		t.Fatalf("ready after load: %d", r.status)
	}
	if old := s.Swap("tiny", nil); old != b {
		t.Fatal("unload did not return the serving backend")
	}
	<-b.Done()
	if r := do(t, "GET", ts.URL+"/v2/health/ready", "", nil); r.status != http.StatusServiceUnavailable {
		t.Fatalf("ready after unload: %d", r.status)
	}
	// A retired backend swapped in again must not loop or serve: it answers 503.
	s.Swap("tiny", b)
	if r := do(t, "POST", ts.URL+"/v2/models/tiny/infer", tinyRequest, nil); r.status != http.StatusServiceUnavailable {
		t.Fatalf("retired backend swapped in again: %d %s", r.status, r.body)
	}
}

// TestBackendCloseUnused checks that a Backend never swapped in can be closed, which closes
// its telemetry handle so that the same version can be loaded again.
func TestBackendCloseUnused(t *testing.T) {
	core, reg := newCore(t)
	b := builtinBackend(t, tinyModel(t), core, "1")
	if vs := seriesVersions(t, reg); !slices.Equal(vs, []string{"1"}) {
		t.Fatalf("series for %v before Close", vs)
	}
	b.Close()
	<-b.Done()
	if vs := seriesVersions(t, reg); len(vs) != 0 {
		t.Fatalf("series for %v after Close", vs)
	}
	b.Close() // idempotent
	builtinBackend(t, tinyModel(t), core, "1")
}

// TestSwapAddsModels checks that Swap serves a name that was not configured, and that a server
// without expected models is ready once any model is loaded.
func TestSwapAddsModels(t *testing.T) {
	s, ts := serve(t, testConfig(), Options{})
	if s.Ready() {
		t.Fatal("ready with no model")
	}
	s.Swap("tiny", builtinBackend(t, tinyModel(t), nil, "1"))
	if !s.Ready() {
		t.Fatal("not ready with a model loaded")
	}
	checkTiny(t, do(t, "POST", ts.URL+"/v2/models/tiny/infer", tinyRequest, nil))
}
