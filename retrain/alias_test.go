package retrain

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
	"github.com/edgeloop/edgeloop/retrain/gate/gatetest"
)

// doRaw sends method to the controller with a raw body and returns the status and body.
func (e *testEnv) doRaw(t *testing.T, method, path, token string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}

// publishTestVersions publishes versions 1 and 2 of model signed by the controller's key and
// version 3 signed by a key nobody trusts.
func publishTestVersions(t *testing.T, cfg Config, repo *modelrepo.Repository, model string) *modelrepo.Signer {
	t.Helper()
	signer, err := modelrepo.LoadSigner(cfg.Repository.SigningKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := modelrepo.GenerateKey(filepath.Join(t.TempDir(), "foreign"))
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := modelrepo.LoadSigner(keys.Private)
	if err != nil {
		t.Fatal(err)
	}
	for v, s := range map[int64]*modelrepo.Signer{1: signer, 2: signer, 3: foreign} {
		draft := modelrepo.Manifest{
			Classes: []string{"a", "b"},
			Input:   modelrepo.Tensor{Name: "input", Datatype: "FP32", Shape: []int64{-1, 4}},
			Output:  modelrepo.Output{Name: "logits", Kind: modelrepo.OutputLogits},
		}
		if _, err := repo.Publish(context.Background(), model, draft, []modelrepo.File{modelrepo.BytesFile("model.onnx", []byte("model"))},
			s, modelrepo.PublishOptions{Version: v}); err != nil {
			t.Fatal(err)
		}
	}
	return signer
}

// TestAliasAPI moves aliases through PUT /v1/models/{model}/aliases/{alias} on a file bucket
// and on a real MinIO bucket: every refusal, the signed pointer written (verifiable, bound to
// its model and alias, its sequence growing with each move, a rollback included), a repeated
// move that writes nothing, an unsigned pointer re-signed, and concurrent moves that each get
// their own sequence.
func TestAliasAPI(t *testing.T) {
	for _, store := range []string{"file", "minio"} {
		t.Run(store, func(t *testing.T) {
			cfg, _ := testConfig(t)
			if store == "minio" {
				endpoint, ak, sk := testenv.MinIO(t)
				s3 := objstore.DefaultS3Config()
				s3.Endpoint, s3.AccessKey, s3.SecretKey, s3.Insecure, s3.Bucket = endpoint, ak, sk, true, "models"
				if err := objstore.CreateS3Bucket(context.Background(), s3); err != nil {
					t.Fatal(err)
				}
				t.Setenv(objstore.EnvAccessKey, ak)
				t.Setenv(objstore.EnvSecretKey, sk)
				cfg.Repository.Bucket = "s3://models?endpoint=" + endpoint + "&insecure=true"
				cfg.Dataset.Bucket = cfg.Repository.Bucket
			}
			bucket, err := objstore.Open(context.Background(), cfg.Repository.Bucket)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { bucket.Close() })
			repo := modelrepo.New(bucket)
			signer := publishTestVersions(t, cfg, repo, "fashion")
			e := start(t, cfg, newFakeBackend(), &clock{t: time.Now()})
			testAliasAPI(t, e, repo, modelrepo.NewVerifier(signer.Public()))
		})
	}
}

func testAliasAPI(t *testing.T, e *testEnv, repo *modelrepo.Repository, verifier *modelrepo.Verifier) {
	ctx := context.Background()
	put := func(path, token, body string) (int, AliasMove, string) {
		t.Helper()
		code, b := e.doRaw(t, http.MethodPut, path, token, []byte(body))
		var m AliasMove
		if code == http.StatusOK {
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("PUT %s: %v: %s", path, err, b)
			}
		}
		return code, m, string(b)
	}
	// stored reads the alias from the bucket and checks it as an exporter does.
	stored := func(alias string) modelrepo.Alias {
		t.Helper()
		a, err := repo.Alias(ctx, "fashion", alias)
		if err != nil {
			t.Fatal(err)
		}
		if err := modelrepo.VerifyPointer(&a, verifier, "fashion", alias); err != nil {
			t.Fatalf("alias %s in the bucket does not verify: %v", alias, err)
		}
		return a
	}

	code, b := e.doRaw(t, http.MethodGet, "/v1/models/fashion/aliases", operatorToken, nil)
	if code != http.StatusOK || !strings.Contains(string(b), `"aliases": []`) || !strings.Contains(string(b), `"latest": 3`) {
		t.Fatalf("GET aliases before any: %d %s", code, b)
	}

	// Refusals: nothing is written by any of them.
	for _, c := range []struct {
		name, path, token, body string
		want                    int
		msg                     string
	}{
		{"no token", "/v1/models/fashion/aliases/stable", "", `{"version": 1}`, 401, "no credential"},
		{"wrong token", "/v1/models/fashion/aliases/stable", "nope", `{"version": 1}`, 401, "unknown or revoked"},
		{"model not managed", "/v1/models/other/aliases/stable", operatorToken, `{"version": 1}`, 404, `"other" is not in the controller's models`},
		{"latest", "/v1/models/fashion/aliases/latest", operatorToken, `{"version": 1}`, 400, `"latest" is not an alias`},
		{"number", "/v1/models/fashion/aliases/7", operatorToken, `{"version": 1}`, 400, "numbers select versions"},
		{"dots", "/v1/models/fashion/aliases/a..b", operatorToken, `{"version": 1}`, 400, "alias"},
		{"leading dash", "/v1/models/fashion/aliases/-x", operatorToken, `{"version": 1}`, 400, "alias"},
		{"too long", "/v1/models/fashion/aliases/" + strings.Repeat("a", 65), operatorToken, `{"version": 1}`, 400, "alias"},
		{"unknown field", "/v1/models/fashion/aliases/stable", operatorToken, `{"version": 1, "force": true}`, 400, "unknown field"},
		{"not JSON", "/v1/models/fashion/aliases/stable", operatorToken, `stable=1`, 400, "body"},
		{"no version", "/v1/models/fashion/aliases/stable", operatorToken, `{"reason": "x"}`, 400, "version: want a positive"},
		{"negative version", "/v1/models/fashion/aliases/stable", operatorToken, `{"version": -2}`, 400, "version: want a positive"},
		{"unprintable reason", "/v1/models/fashion/aliases/stable", operatorToken, `{"version": 1, "reason": "a\u0000b"}`, 400, "reason: holds the unprintable"},
		{"long reason", "/v1/models/fashion/aliases/stable", operatorToken, `{"version": 1, "reason": "` + strings.Repeat("r", 1025) + `"}`, 400, "reason: at most 1024"},
		{"body too big", "/v1/models/fashion/aliases/stable", operatorToken, `{"version": 1, "reason": "` + strings.Repeat("r", 17<<10) + `"}`, 413, "larger than"},
		{"no such version", "/v1/models/fashion/aliases/stable", operatorToken, `{"version": 9}`, 404, "fashion has no version 9"},
		{"untrusted version", "/v1/models/fashion/aliases/stable", operatorToken, `{"version": 3}`, 409, "does not verify"},
	} {
		code, _, body := put(c.path, c.token, c.body)
		var ans struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal([]byte(body), &ans); err != nil || code != c.want || !strings.Contains(ans.Error, c.msg) {
			t.Errorf("%s: %d %s, want %d with %q", c.name, code, body, c.want, c.msg)
		}
	}
	if a, err := repo.Aliases(ctx, "fashion"); err != nil || len(a) != 0 {
		t.Fatalf("refused moves wrote aliases: %v %v", a, err)
	}

	// A first rollout, the same again (nothing written), a rollback.
	code, first, body := put("/v1/models/fashion/aliases/stable", operatorToken, `{"version": 2, "reason": "promote after review"}`)
	if code != http.StatusOK || !first.Changed || first.Previous != 0 || first.Version != 2 || !first.Signed ||
		first.Sequence < 1 || first.By != "alice" || first.Reason != "promote after review" || first.Model != "fashion" || first.Alias != "stable" {
		t.Fatalf("first move: %d %s", code, body)
	}
	if a := stored("stable"); a.Version != 2 || a.Sequence != first.Sequence {
		t.Fatalf("stored %+v, answered sequence %d", a, first.Sequence)
	}
	code, again, body := put("/v1/models/fashion/aliases/stable", operatorToken, `{"version": 2}`)
	if code != http.StatusOK || again.Changed || again.Sequence != first.Sequence || again.Previous != 2 {
		t.Fatalf("same move again: %d %s", code, body)
	}
	code, back, body := put("/v1/models/fashion/aliases/stable", operatorToken, `{"version": 1, "reason": "rollback: incident 42"}`)
	if code != http.StatusOK || !back.Changed || back.Previous != 2 || back.Version != 1 || back.Sequence <= first.Sequence {
		t.Fatalf("rollback: %d %s (first sequence %d)", code, body, first.Sequence)
	}
	if a := stored("stable"); a.Version != 1 || a.Sequence != back.Sequence {
		t.Fatalf("after the rollback the bucket holds %+v", a)
	}

	// An unsigned pointer (edgeloop model alias without --key) is listed as such and signed
	// by a move to the same version.
	if err := repo.SetAlias(ctx, "fashion", "canary", 2); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Model   string        `json:"model"`
		Aliases []AliasRecord `json:"aliases"`
		Latest  int64         `json:"latest"`
	}
	code, b = e.doRaw(t, http.MethodGet, "/v1/models/fashion/aliases", operatorToken, nil)
	if err := json.Unmarshal(b, &list); code != http.StatusOK || err != nil || len(list.Aliases) != 2 || list.Latest != 3 ||
		list.Aliases[0].Alias != "canary" || list.Aliases[0].Signed || list.Aliases[0].Sequence != 0 ||
		list.Aliases[1].Alias != "stable" || !list.Aliases[1].Signed || list.Aliases[1].Version != 1 || list.Aliases[1].KeyID == "" {
		t.Fatalf("GET aliases: %d %s", code, b)
	}
	code, resigned, body := put("/v1/models/fashion/aliases/canary", operatorToken, `{"version": 2}`)
	if code != http.StatusOK || !resigned.Changed || !resigned.Signed || resigned.Previous != 2 {
		t.Fatalf("re-signing canary: %d %s", code, body)
	}
	stored("canary")
	code, b = e.doRaw(t, http.MethodGet, "/v1/models/fashion/aliases/canary", operatorToken, nil)
	var one AliasRecord
	if err := json.Unmarshal(b, &one); code != http.StatusOK || err != nil || !one.Signed || one.Version != 2 || one.Sequence != resigned.Sequence {
		t.Fatalf("GET alias canary: %d %s", code, b)
	}
	if code, b := e.doRaw(t, http.MethodGet, "/v1/models/fashion/aliases/beta", operatorToken, nil); code != http.StatusNotFound {
		t.Fatalf("GET an alias never set: %d %s", code, b)
	}
	if code, _ := e.doRaw(t, http.MethodGet, "/v1/models/fashion/aliases", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("GET aliases without a token: %d", code)
	}

	// Concurrent moves: each is answered with its own sequence, and the bucket holds the
	// highest, so that no exporter sees two pointers of one sequence.
	const n = 8
	var wg sync.WaitGroup
	seqs := make([]int64, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, m, body := put("/v1/models/fashion/aliases/stable", operatorToken, `{"version": `+[]string{"1", "2"}[i%2]+`}`)
			if code != http.StatusOK {
				t.Errorf("concurrent move %d: %d %s", i, code, body)
			}
			if m.Changed {
				seqs[i] = m.Sequence
			}
		}()
	}
	wg.Wait()
	seen, highest, changed := map[int64]bool{}, int64(0), 0
	for _, s := range seqs {
		if s == 0 {
			continue
		}
		changed++
		if seen[s] {
			t.Fatalf("two moves answered sequence %d: %v", s, seqs)
		}
		seen[s], highest = true, max(highest, s)
	}
	if a := stored("stable"); a.Sequence != highest || changed == 0 {
		t.Fatalf("the bucket holds sequence %d, the highest answered is %d (%d moves wrote)", a.Sequence, highest, changed)
	}
	t.Logf("%d concurrent moves, %d wrote a pointer, sequences %v", n, changed, seqs)
}

// TestAliasMoveDuringSoak: while a job soaks version 1 on canary, an operator's move of stable
// is answered with a note that the soak will move stable at its end unless canary moves; moving
// canary away stops that, and when the soak ends the job is promoted with the note that stable
// was not moved, leaving the operator's stable in place.
func TestAliasMoveDuringSoak(t *testing.T) {
	cfg, _ := testConfig(t)
	protos := gatetest.Prototypes(gatetest.Spec(), 1)
	writeGolden(t, cfg, "fashion", protos, 400)
	cfg.Gate.EvalSets = []string{"golden"}
	cfg.Gate.MinEvalSamples, cfg.Gate.FirstModelMin = 400, 0.5
	cfg.Publish = PublishConfig{Canary: true, Stable: true, Soak: time.Hour}
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	e := start(t, cfg, &trainingBackend{fakeBackend: newFakeBackend(), noise: []float64{0.2}, protos: protos}, clk)
	if code, body := e.post(t, "/v1/models/fashion/retrain", operatorToken, nil); code != 202 {
		t.Fatalf("manual: %d %s", code, body)
	}
	var job Job
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if j := e.c.Jobs(); len(j) == 1 && j[0].Phase == PhaseSoaking {
			job = j[0]
			break
		} else if len(j) == 1 && j[0].Phase.Done() {
			t.Fatalf("job ended %s: %s", j[0].Phase, j[0].Error)
		}
		if time.Now().After(deadline) {
			t.Fatalf("job not soaking: %+v", e.c.Jobs())
		}
	}
	// A second version to move to, published by hand.
	bucket, err := objstore.Open(context.Background(), cfg.Repository.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	defer bucket.Close()
	signer, err := modelrepo.LoadSigner(cfg.Repository.SigningKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	repo := modelrepo.New(bucket)
	draft := modelrepo.Manifest{Classes: []string{"a", "b"}, Input: modelrepo.Tensor{Name: "input", Datatype: "FP32", Shape: []int64{-1, 4}},
		Output: modelrepo.Output{Name: "logits", Kind: modelrepo.OutputLogits}}
	if _, err := repo.Publish(context.Background(), "fashion", draft, []modelrepo.File{modelrepo.BytesFile("model.onnx", []byte("model"))},
		signer, modelrepo.PublishOptions{Version: 2}); err != nil {
		t.Fatal(err)
	}
	put := func(alias string, version int) AliasMove {
		t.Helper()
		code, b := e.doRaw(t, http.MethodPut, "/v1/models/fashion/aliases/"+alias, operatorToken, []byte(`{"version": `+strconv.Itoa(version)+`}`))
		var m AliasMove
		if err := json.Unmarshal(b, &m); code != http.StatusOK || err != nil {
			t.Fatalf("move %s to %d: %d %s", alias, version, code, b)
		}
		return m
	}
	if m := put("stable", 2); !strings.Contains(m.Note, "job "+job.ID+" is soaking version 1 on canary and will point stable at it") {
		t.Fatalf("moving stable during the soak: note %q", m.Note)
	}
	if m := put("canary", 2); !strings.Contains(m.Note, "with canary moved, it will not move stable") {
		t.Fatalf("moving canary during the soak: note %q", m.Note)
	}
	clk.Add(time.Hour + time.Second)
	j := waitEnded(t, e)
	if j.Phase != PhasePromoted || !strings.Contains(j.Error, "stable not moved") {
		t.Fatalf("after the soak: %s %q", j.Phase, j.Error)
	}
	if a, err := repo.Alias(context.Background(), "fashion", "stable"); err != nil || a.Version != 2 {
		t.Fatalf("stable after the soak: %+v %v, want the operator's 2", a, err)
	}
}
