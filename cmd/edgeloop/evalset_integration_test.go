//go:build integration

package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// TestEvalsetMinIO creates sets in a real MinIO: from files, and frozen from shards and label
// files that are themselves objects in MinIO (downloaded by --shards/--label-files URLs).
func TestEvalsetMinIO(t *testing.T) {
	endpoint, access, secret := testenv.MinIO(t)
	t.Setenv(objstore.EnvAccessKey, access)
	t.Setenv(objstore.EnvSecretKey, secret)
	ctx := context.Background()
	cfg := objstore.S3Config{Endpoint: endpoint, Bucket: "edgeloop", AccessKey: access, SecretKey: secret, Insecure: true, PartSize: objstore.DefaultPartSize}
	if err := objstore.CreateS3Bucket(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	b, err := objstore.NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	url := func(prefix string) string {
		return "s3://edgeloop" + prefix + "?endpoint=" + endpoint + "&insecure=true"
	}
	classes := []string{"zero", "one", "two", "three"}

	dir, csv := greyImages(t, 12, classes)
	code, stdout, stderr := runEvalsetCmd(t, "create", "--bucket", url(""), "--model", "digits", "--name", "files",
		"--from-dir", dir, "--labels", csv, "--shape", "28,28", "--classes", strings.Join(classes, ","))
	if code != exitOK || !strings.Contains(stdout, "12 samples") {
		t.Fatalf("create = %d\n%s\n%s", code, stdout, stderr)
	}

	// Two shards of captured samples in the collector's layout, and a label file.
	var labels strings.Builder
	for shard := range 2 {
		var samples []*sample.Sample
		for i := range 20 {
			n := shard*20 + i
			v := make([]float32, 784)
			v[0], v[1] = float32(n), 1
			var buf bytes.Buffer
			npy.WriteFloat32(&buf, []int{1, 28, 28}, v)
			s, err := sample.New(sample.Meta{
				Model: "digits", Version: "1", Node: "edge-1", Time: time.Date(2026, 12, 1, 0, 0, n, 0, time.UTC),
				Scores: []float32{1}, ScoresKind: sample.ScoresProbabilities, Confidence: map[string]float64{"max_softmax": 0.4},
				Reason: "low_confidence", Input: sample.InputInfo{Name: "x", Datatype: "FP32", Shape: []int64{1, 28, 28}, File: sample.NPYFile},
			}, buf.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&labels, "{\"key\":%q,\"label\":%q}\n", s.Meta.Key, classes[n%4])
			samples = append(samples, s)
		}
		var tarball bytes.Buffer
		if err := sample.WriteTar(&tarball, samples); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("samples/digits/1/dt=2026-12-01/hour=00/shard-%d.tar", shard)
		if err := b.Put(ctx, key, bytes.NewReader(tarball.Bytes()), int64(tarball.Len())); err != nil {
			t.Fatal(err)
		}
		// The index beside a shard is not a shard.
		b.Put(ctx, strings.TrimSuffix(key, ".tar")+".index.jsonl", strings.NewReader("{}\n"), 3)
	}
	b.Put(ctx, "labels/digits/2026-12-01.jsonl", strings.NewReader(labels.String()), int64(labels.Len()))

	code, stdout, stderr = runEvalsetCmd(t, "create", "--bucket", url(""), "--model", "digits", "--name", "frozen",
		"--freeze", "--shards", url("/samples/digits"), "--label-files", url("/labels/digits"),
		"--shape", "1,28,28", "--classes", strings.Join(classes, ","))
	if code != exitOK || !strings.Contains(stdout, "40 samples") || !strings.Contains(stderr, "downloaded 2 objects") {
		t.Fatalf("freeze = %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runEvalsetCmd(t, "ls", "--bucket", url(""))
	if code != exitOK || !strings.Contains(stdout, "digits  files ") || !strings.Contains(stdout, "digits  frozen") {
		t.Fatalf("ls = %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runEvalsetCmd(t, "show", "--bucket", url(""), "--model", "digits", "--name", "frozen", "--verify")
	if code != exitOK || !strings.Contains(stdout, "0      zero   10     25.0%") {
		t.Fatalf("show = %d\n%s\n%s", code, stdout, stderr)
	}
}
