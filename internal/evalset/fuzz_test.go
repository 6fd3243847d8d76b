package evalset_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/edgeloop/edgeloop/internal/evalset"
)

// FuzzParseManifest: a manifest comes from a store that is not trusted; parsing must never
// panic, and what it accepts must be usable (Check and a digest computed on it do not panic).
func FuzzParseManifest(f *testing.F) {
	b, err := newFS(f)
	if err != nil {
		f.Fatal(err)
	}
	m, err := evalset.Write(context.Background(), b, smallSet(fashionSpec, "fashion", "seed", 3))
	if err != nil {
		f.Fatal(err)
	}
	good, _ := json.Marshal(m)
	f.Add(good)
	f.Add([]byte(`{"schema_version":1,"model":"m","name":"n","task":"classification","count":1,"class_counts":[1],"classes":["a"],"input":{"shape":[1],"datatype":"FP32"},"shards":["shard-000000.tar"],"digest":"` + m.Digest + `","source":""}`))
	f.Add([]byte(`{"input":{"shape":[-1,9223372036854775807]}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := evalset.ParseManifest(data)
		if err != nil {
			return
		}
		if m.Spec().Width() <= 0 || m.Count <= 0 || len(m.Shards) == 0 {
			t.Fatalf("accepted an unusable manifest: %+v", m)
		}
		_ = m.Check(fashionSpec)
		s := &evalset.Set{Manifest: *m}
		_ = s.ComputeDigest()
	})
}
