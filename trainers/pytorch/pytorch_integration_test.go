//go:build integration

package pytorch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// TestJobS3 runs the job as the kubernetes and http backends do: the dataset manifest and the
// output prefix are s3:// URLs on a real MinIO, the manifest's keys relative to its "bucket"
// (a bucket URL with a prefix). It checks that model.onnx is uploaded after metrics.json and
// checkpoint.pt, and that a second job fine-tunes from the first's checkpoint under an s3://
// EDGELOOP_BASE_MODEL.
func TestJobS3(t *testing.T) {
	needPython(t, "torch, onnx, numpy, boto3")
	f := newFixture(t)
	endpoint, access, secret := testenv.MinIO(t)
	ctx := context.Background()
	cfg := objstore.S3Config{Endpoint: endpoint, Bucket: "edgeloop", AccessKey: access, SecretKey: secret,
		Insecure: true, PartSize: objstore.DefaultPartSize}
	if err := objstore.CreateS3Bucket(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	b, err := objstore.NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	query := "?endpoint=" + endpoint + "&insecure=true"
	put := func(key string, data []byte) {
		t.Helper()
		if err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	// The collector's layout under the prefix "data" of the bucket; keys relative to it.
	var shardKeys []string
	for _, p := range f.shards {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		k := "samples/fashion/1/dt=2026-12-01/hour=10/" + filepath.Base(p)
		put("data/"+k, data)
		shardKeys = append(shardKeys, k)
	}
	labels, err := os.ReadFile(f.labels[0])
	if err != nil {
		t.Fatal(err)
	}
	put("data/labels/fashion/posted.jsonl", labels)
	manifest, _ := json.Marshal(map[string]any{"model": "fashion", "bucket": "s3://edgeloop/data" + query,
		"generated": time.Now().UTC(), "shards": shardKeys, "labels": []string{"labels/fashion/posted.jsonl"}})
	put("jobs/fashion/job-1/dataset.json", manifest)

	env := map[string]string{
		"EDGELOOP_MODEL": "fashion", "EDGELOOP_BASE_VERSION": "0", "EDGELOOP_JOB_ID": "job-1",
		"EDGELOOP_DATASET_MANIFEST": "s3://edgeloop/jobs/fashion/job-1/dataset.json" + query,
		"EDGELOOP_OUTPUT":           "s3://edgeloop/jobs/fashion/job-1/output/" + query,
		"AWS_ACCESS_KEY_ID":         access, "AWS_SECRET_ACCESS_KEY": secret,
	}
	first := runWatched(t, b, "jobs/fashion/job-1/output/", env, commonArgs(f, "--arch", "mlp", "--hidden", "64", "--epochs", "3", "--lr", "0.003")...)
	m := readMetrics(t, first)
	checkMetrics(t, m, "mlp", 3)
	f.checkSamples(t, m)
	f.checkModel(t, first, m, 0.5)
	for _, d := range m.Datasets[1:] {
		if !strings.HasPrefix(d, "s3://edgeloop/data/samples/fashion/1/") || !strings.HasSuffix(d, query) {
			t.Errorf("dataset %q, want the shard's object URL", d)
		}
	}

	t.Run("fine-tune from s3", func(t *testing.T) {
		env := maps.Clone(env)
		env["EDGELOOP_JOB_ID"], env["EDGELOOP_BASE_VERSION"] = "job-2", "1"
		env["EDGELOOP_OUTPUT"] = "s3://edgeloop/jobs/fashion/job-2/output/" + query
		env["EDGELOOP_BASE_MODEL"] = "s3://edgeloop/jobs/fashion/job-1/output/" + query
		dir := runWatched(t, b, "jobs/fashion/job-2/output/", env, commonArgs(f, "--epochs", "1", "--lr", "0.0005")...)
		m2 := readMetrics(t, dir)
		if m2.FineTunedFrom != env["EDGELOOP_BASE_MODEL"] || m2.Arch != "mlp" {
			t.Errorf("fine_tuned_from %q arch %q, want %q and the parent's mlp", m2.FineTunedFrom, m2.Arch, env["EDGELOOP_BASE_MODEL"])
		}
		if tuned, scratch := m2.History[0].TrainLoss, m.History[0].TrainLoss; tuned > 0.6*scratch || tuned > 1.25*m.TrainLoss {
			t.Errorf("fine-tuned first-epoch loss %.4f, scratch %.4f, the parent's last %.4f: not started from the parent", tuned, scratch, m.TrainLoss)
		}
		f.checkModel(t, dir, m2, 0.5)
	})
}

// runWatched runs the job while polling prefix for model.onnx: when it first appears,
// metrics.json and checkpoint.pt must be there already. It returns a local directory holding
// the three objects as uploaded.
func runWatched(t *testing.T, b objstore.Bucket, prefix string, env map[string]string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var polls atomic.Int64
	var seen atomic.Bool
	violation := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			polls.Add(1)
			if ok, _ := b.Exists(ctx, path.Join(prefix, "model.onnx")); ok {
				seen.Store(true)
				for _, other := range []string{"metrics.json", "checkpoint.pt"} {
					if ok, err := b.Exists(ctx, path.Join(prefix, other)); !ok {
						violation <- other + " missing when model.onnx was already there (" + errString(err) + ")"
					}
				}
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	r := runJob(t, env, args...)
	<-time.After(200 * time.Millisecond) // the watcher's last poll
	cancel()
	<-done
	mustSucceed(t, r)
	select {
	case v := <-violation:
		t.Errorf("upload order: %s", v)
	default:
	}
	if !seen.Load() {
		t.Fatalf("the watcher never saw %smodel.onnx", prefix)
	}
	t.Logf("%d polls of %s while the job ran; model.onnx never seen before the other outputs", polls.Load(), prefix)
	dir := t.TempDir()
	for _, name := range []string{"model.onnx", "metrics.json", "checkpoint.pt"} {
		rc, _, err := b.Get(context.Background(), path.Join(prefix, name))
		if err != nil {
			t.Fatalf("%s%s: %v", prefix, name, err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
