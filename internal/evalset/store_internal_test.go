package evalset

import (
	"bytes"
	"context"
	"reflect"
	"testing"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/objstore"
)

func TestWriteManyShards(t *testing.T) {
	// Write puts about 64 MiB of values in a shard; with 7 samples a shard, 50 samples make 8
	// shards whose order Load must keep.
	b, err := objstore.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	spec := dataset.Spec{Shape: []int64{2, 3}, Datatype: "FP32", Classes: []string{"a", "b"}}
	s := &Set{Manifest: Manifest{Model: "tiny", Name: "many", Classes: spec.Classes, Input: Input{Shape: spec.Shape, Datatype: "FP32"}}}
	for i := range 50 {
		v := []float32{float32(i), 1, 2, 3, 4, float32(-i)}
		s.Keys = append(s.Keys, dataset.ContentKey(v))
		s.Labels = append(s.Labels, i%2)
		s.Inputs = append(s.Inputs, v...)
	}
	ctx := context.Background()
	m, err := write(ctx, b, s, 7)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"shard-000000.tar", "shard-000001.tar", "shard-000002.tar", "shard-000003.tar", "shard-000004.tar", "shard-000005.tar", "shard-000006.tar", "shard-000007.tar"}
	if !reflect.DeepEqual(m.Shards, want) {
		t.Fatalf("Shards = %v", m.Shards)
	}
	got, err := Load(ctx, b, "tiny", "many")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Inputs, s.Inputs) || !reflect.DeepEqual(got.Keys, s.Keys) {
		t.Fatal("Load changed the order")
	}
	// Swapping two shards keeps every sample but not the order: the digest says so.
	a, _, _ := objstore.ReadAll(ctx, b, Prefix("tiny", "many")+"shard-000001.tar", 0)
	c, _, _ := objstore.ReadAll(ctx, b, Prefix("tiny", "many")+"shard-000002.tar", 0)
	b.Put(ctx, Prefix("tiny", "many")+"shard-000001.tar", bytesReader(c), int64(len(c)))
	b.Put(ctx, Prefix("tiny", "many")+"shard-000002.tar", bytesReader(a), int64(len(a)))
	if _, err := Load(ctx, b, "tiny", "many"); err == nil {
		t.Fatal("Load accepted shards in another order")
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
