package models_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/collector/models"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/objstore/objstoretest"
	"github.com/edgeloop/edgeloop/internal/onnx"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

const nodeToken = "node-secret-token"

// requireNode stands in for the collector's auth middleware: one valid bearer token.
func requireNode(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+nodeToken {
			http.Error(w, `{"error":"unknown or revoked token"}`, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// serve mounts the handler as the collector would and returns the HTTP bucket URL.
func serve(t *testing.T, b objstore.Bucket, root string) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(models.PathPrefix, models.NewHandler(b, root, requireNode, nil))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + strings.TrimSuffix(models.PathPrefix, "/")
}

// httpBucket opens the bucket URL as an exporter would, the token in a file named by
// EDGELOOP_TOKEN_FILE.
func httpBucket(t *testing.T, bucketURL string) objstore.Bucket {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(nodeToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) (string, bool) {
		if k == objstore.EnvTokenFile {
			return tokenFile, true
		}
		return "", false
	}
	target, err := objstore.ParseURL(bucketURL, env)
	if err != nil {
		t.Fatal(err)
	}
	b, err := target.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// split is a bucket whose writes go straight to the store and whose reads go through the
// collector's API: it lets the conformance suite check every read path of the HTTP backend.
type split struct {
	objstore.Bucket // reads: the HTTP bucket
	store           objstore.Bucket
}

func (s split) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.store.Put(ctx, key, r, size)
}
func (s split) Delete(ctx context.Context, key string) error { return s.store.Delete(ctx, key) }

// TestConformanceThroughHTTP runs the objstore conformance suite with every read (Get,
// GetIfNoneMatch, Attributes, Exists, Iter) going through the handler and the HTTP backend.
func TestConformanceThroughHTTP(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Bucket {
		store, err := objstore.NewFS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		return split{Bucket: httpBucket(t, serve(t, store, "")), store: store}
	})
}

func tinyONNX(t *testing.T) []byte {
	t.Helper()
	m := &onnx.Model{
		IRVersion: 8,
		Opsets:    []onnx.Opset{{Version: 13}},
		Graph: onnx.Graph{
			Name: "tiny",
			Initializers: []onnx.Tensor{
				{Name: "w", DataType: onnx.Float, Dims: []int64{3, 4}, Float32: make([]float32, 12)},
				{Name: "b", DataType: onnx.Float, Dims: []int64{3}, Float32: []float32{0.5, 0, 0}},
			},
			Inputs:  []onnx.ValueInfo{{Name: "pixels", ElemType: onnx.Float, Shape: []onnx.Dim{{Param: "batch"}, {Value: 4}}}},
			Outputs: []onnx.ValueInfo{{Name: "logits", ElemType: onnx.Float, Shape: []onnx.Dim{{Param: "batch"}, {Value: 3}}}},
			Nodes: []onnx.Node{{Name: "fc", OpType: "Gemm", Inputs: []string{"pixels", "w", "b"}, Outputs: []string{"logits"},
				Attrs: map[string]onnx.Attribute{"transB": {Type: onnx.AttrInt, Int: 1}}}},
		},
		Metadata: map[string]string{"classes": `["zero","one","two"]`},
	}
	data, err := onnx.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestRepositoryOverHTTPFS(t *testing.T) {
	store, err := objstore.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	testRepositoryOverHTTP(t, store)
}

func TestRepositoryOverHTTPMinIO(t *testing.T) {
	endpoint, access, secret := testenv.MinIO(t)
	cfg := objstore.S3Config{Endpoint: endpoint, Bucket: "collector", AccessKey: access, SecretKey: secret,
		Insecure: true, PartSize: objstore.DefaultPartSize}
	if err := objstore.CreateS3Bucket(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	store, err := objstore.NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	testRepositoryOverHTTP(t, store)
}

// testRepositoryOverHTTP publishes into the collector's bucket and reads the repository as an
// exporter's model sync does: Latest, Pointer (conditional GET of the latest hint), Download.
func testRepositoryOverHTTP(t *testing.T, store objstore.Bucket) {
	ctx := context.Background()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	signer, verifier := modelrepo.NewSigner(priv), modelrepo.NewVerifier(priv.Public().(ed25519.PublicKey))
	pub := modelrepo.New(store)
	draft := modelrepo.Manifest{
		Classes: []string{"zero", "one", "two"},
		Input:   modelrepo.Tensor{Name: "pixels", Datatype: "FP32", Shape: []int64{-1, 4}},
		Output:  modelrepo.Output{Name: "logits", Kind: modelrepo.OutputLogits},
	}
	model := tinyONNX(t)
	publish := func() {
		t.Helper()
		if _, err := pub.Publish(ctx, "tiny", draft, []modelrepo.File{modelrepo.BytesFile("model.onnx", model)}, signer, modelrepo.PublishOptions{}); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	publish()
	// Something outside models/ that nodes must not see.
	if err := store.Put(ctx, "samples/tiny/1/secret.tar", strings.NewReader("private"), 7); err != nil {
		t.Fatal(err)
	}

	edge := modelrepo.New(httpBucket(t, serve(t, store, models.Root)))
	if got, err := edge.Models(ctx); err != nil || !slices.Equal(got, []string{"tiny"}) {
		t.Fatalf("Models = %q, %v", got, err)
	}
	if v, err := edge.Latest(ctx, "tiny"); err != nil || v != 1 {
		t.Fatalf("Latest = %d, %v; want 1", v, err)
	}
	a, etag, err := edge.Pointer(ctx, modelrepo.LatestKey("tiny"), "")
	if err != nil || a.Version != 1 || etag == "" {
		t.Fatalf("Pointer = %+v, %q, %v", a, etag, err)
	}
	if _, _, err := edge.Pointer(ctx, modelrepo.LatestKey("tiny"), etag); !objstore.IsNotModified(err) {
		t.Fatalf("Pointer(same ETag) = %v, want not modified", err)
	}
	dir := filepath.Join(t.TempDir(), "tiny", "1")
	m, err := edge.Download(ctx, "tiny", 1, dir, verifier)
	if err != nil {
		t.Fatalf("Download: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, modelrepo.ModelFile)); err != nil || !bytes.Equal(got, model) || m.Version != 1 {
		t.Fatalf("downloaded model.onnx: %d bytes, %v", len(got), err)
	}

	publish()
	a, etag2, err := edge.Pointer(ctx, modelrepo.LatestKey("tiny"), etag)
	if err != nil || a.Version != 2 || etag2 == etag {
		t.Fatalf("Pointer after a publish = %+v, %q, %v; want version 2 and a new ETag", a, etag2, err)
	}
	if err := edge.SetAlias(ctx, "tiny", "stable", 1); !errors.Is(err, objstore.ErrReadOnly) {
		t.Fatalf("SetAlias over HTTP = %v, want read-only", err)
	}

	// The rest of the bucket does not exist in the nodes' view.
	b := edge.Bucket()
	if ok, err := b.Exists(ctx, "samples/tiny/1/secret.tar"); err != nil || ok {
		t.Fatalf("Exists(samples/...) = %v, %v; want false", ok, err)
	}
	for _, c := range []struct {
		prefix    string
		recursive bool
		want      []string
	}{
		{"", false, []string{"models/"}},
		{"sa", false, nil},
		{"samples/", true, nil},
		{"models/tiny/1/", false, []string{"models/tiny/1/config.pbtxt", "models/tiny/1/edgeloop.json", "models/tiny/1/model.onnx"}},
	} {
		got, err := objstore.List(ctx, b, c.prefix, c.recursive)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("List(%q, %v) = %q, %v; want %q", c.prefix, c.recursive, got, err, c.want)
		}
	}
	all, err := objstore.List(ctx, b, "", true)
	if err != nil || len(all) == 0 || slices.ContainsFunc(all, func(k string) bool { return !strings.HasPrefix(k, "models/") }) {
		t.Errorf("List(\"\", recursive) = %q, %v; want only models/", all, err)
	}
}

// modelAndSamples is a bucket holding a model file and, outside the repository, a shard: both
// "data".
func modelAndSamples(t *testing.T) objstore.Bucket {
	t.Helper()
	store, err := objstore.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	for _, k := range []string{"models/m/1/model.onnx", "samples/m/1/x.tar"} {
		if err := store.Put(context.Background(), k, strings.NewReader("data"), 4); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

func TestHandlerRefusals(t *testing.T) {
	store := modelAndSamples(t)
	base := serve(t, store, models.Root)
	for _, c := range []struct {
		name, method, path, token string
		want                      int
	}{
		{"no token", "GET", "/models/m/1/model.onnx", "", http.StatusUnauthorized},
		{"wrong token", "GET", "/models/m/1/model.onnx", "other", http.StatusUnauthorized},
		{"ok", "GET", "/models/m/1/model.onnx", nodeToken, http.StatusOK},
		{"head", "HEAD", "/models/m/1/model.onnx", nodeToken, http.StatusOK},
		{"outside models", "GET", "/samples/m/1/x.tar", nodeToken, http.StatusNotFound},
		// ServeMux redirects to the cleaned path, which is outside models/.
		{"dot-dot", "GET", "/models/../samples/m/1/x.tar", nodeToken, http.StatusNotFound},
		{"escaped dot-dot", "GET", "/models/%2e%2e/samples/m/1/x.tar", nodeToken, http.StatusBadRequest},
		{"escaped slash", "GET", "/models%2F..%2Fsamples/m/1/x.tar", nodeToken, http.StatusBadRequest},
		{"dot-dot past the mount", "GET", "/../../models/m/1/model.onnx", nodeToken, http.StatusNotFound},
		{"missing", "GET", "/models/m/2/model.onnx", nodeToken, http.StatusNotFound},
		{"put", "PUT", "/models/m/1/model.onnx", nodeToken, http.StatusMethodNotAllowed},
		{"delete", "DELETE", "/models/m/1/model.onnx", nodeToken, http.StatusMethodNotAllowed},
		{"bad recursive", "GET", "/?prefix=models/&recursive=maybe", nodeToken, http.StatusBadRequest},
		{"unknown parameter", "GET", "/?prefix=models/&limit=3", nodeToken, http.StatusBadRequest},
		{"bad prefix", "GET", "/?prefix=models//", nodeToken, http.StatusBadRequest},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, base+c.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Fatalf("%s %s = %d %s, want %d", c.method, c.path, resp.StatusCode, body, c.want)
			}
			if c.want == http.StatusOK && (resp.Header.Get("ETag") == "" || resp.ContentLength != 4) {
				t.Fatalf("headers %v, want ETag and Content-Length 4", resp.Header)
			}
			if c.want == http.StatusNotFound && strings.Contains(string(body), "data") {
				t.Fatalf("404 leaked content: %s", body)
			}
		})
	}
}

func TestConditionalHeaders(t *testing.T) {
	store, err := objstore.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Put(context.Background(), "models/m/latest.json", strings.NewReader(`{"version":1}`), 13); err != nil {
		t.Fatal(err)
	}
	attrs, _ := store.Attributes(context.Background(), "models/m/latest.json")
	base := serve(t, store, models.Root)
	for _, c := range []struct {
		method, inm string
		want        int
	}{
		{"GET", objstore.QuoteETag(attrs.ETag), http.StatusNotModified},
		{"GET", "W/" + objstore.QuoteETag(attrs.ETag), http.StatusNotModified},
		{"GET", `"other", ` + objstore.QuoteETag(attrs.ETag), http.StatusNotModified},
		{"GET", "*", http.StatusNotModified},
		{"GET", `"other"`, http.StatusOK},
		{"HEAD", objstore.QuoteETag(attrs.ETag), http.StatusNotModified},
		{"HEAD", `"other"`, http.StatusOK},
	} {
		t.Run(fmt.Sprintf("%s %s", c.method, c.inm), func(t *testing.T) {
			req, _ := http.NewRequest(c.method, base+"/models/m/latest.json", nil)
			req.Header.Set("Authorization", "Bearer "+nodeToken)
			req.Header.Set("If-None-Match", c.inm)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.want)
			}
			if resp.Header.Get("ETag") != objstore.QuoteETag(attrs.ETag) {
				t.Fatalf("ETag header %q, want %q", resp.Header.Get("ETag"), objstore.QuoteETag(attrs.ETag))
			}
		})
	}
}

// TestModelsPath: GET /v1/models/<model>/<file> is the repository's models/<model>/<file>, with
// the same ETag and conditional answers, and reaches nothing outside models/.
func TestModelsPath(t *testing.T) {
	store := modelAndSamples(t)
	ctx := context.Background()
	attrs, _ := store.Attributes(ctx, "models/m/1/model.onnx")
	h := models.NewHandler(store, models.Root, requireNode, nil)
	mux := http.NewServeMux()
	mux.Handle(models.PathPrefix, h)
	mux.Handle(models.ModelsPath, h)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, c := range []struct {
		name, method, path, inm string
		want                    int
		body                    string
	}{
		{"get", "GET", "/v1/models/m/1/model.onnx", "", http.StatusOK, "data"},
		{"head", "HEAD", "/v1/models/m/1/model.onnx", "", http.StatusOK, ""},
		{"not modified", "GET", "/v1/models/m/1/model.onnx", objstore.QuoteETag(attrs.ETag), http.StatusNotModified, ""},
		{"same via the bucket API", "GET", "/v1/repo/models/m/1/model.onnx", "", http.StatusOK, "data"},
		{"missing", "GET", "/v1/models/m/2/model.onnx", "", http.StatusNotFound, ""},
		{"no file", "GET", "/v1/models/", "", http.StatusBadRequest, ""},
		// ServeMux cleans the path to /v1/samples/..., which this handler does not serve.
		{"dot-dot", "GET", "/v1/models/../samples/m/1/x.tar", "", http.StatusNotFound, ""},
		{"escaped dot-dot", "GET", "/v1/models/%2e%2e/samples/m/1/x.tar", "", http.StatusBadRequest, ""},
		{"put", "PUT", "/v1/models/m/1/model.onnx", "", http.StatusMethodNotAllowed, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
			req.Header.Set("Authorization", "Bearer "+nodeToken)
			if c.inm != "" {
				req.Header.Set("If-None-Match", c.inm)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.want || (c.body != "" && string(body) != c.body) {
				t.Fatalf("%s %s = %d %q, want %d %q", c.method, c.path, resp.StatusCode, body, c.want, c.body)
			}
			if c.want == http.StatusOK || c.want == http.StatusNotModified {
				if resp.Header.Get("ETag") != objstore.QuoteETag(attrs.ETag) {
					t.Fatalf("ETag %q, want %q", resp.Header.Get("ETag"), objstore.QuoteETag(attrs.ETag))
				}
			}
			if strings.Contains(string(body), "data") && c.want != http.StatusOK {
				t.Fatalf("%d leaked content: %s", resp.StatusCode, body)
			}
		})
	}
	req, _ := http.NewRequest("GET", srv.URL+"/v1/models/m/1/model.onnx", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a token: %v %v, want 401", resp, err)
	}
}
