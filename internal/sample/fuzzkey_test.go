package sample_test

import (
	"bytes"
	"testing"

	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/sample/samplefuzz"
)

// FuzzUnmarshalRecordKeyed is FuzzUnmarshalRecord past the key check: the fuzzed record's
// metadata gets the key of its fuzzed content (samplefuzz.FixRecord) before it is decoded, so
// the fuzzer explores the validation and round trip that follow the check instead of the
// check's refusal. Seeds: testdata/fuzz/FuzzUnmarshalRecordKeyed.
func FuzzUnmarshalRecordKeyed(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		s := checkUnmarshalRecord(t, samplefuzz.FixRecord(data))
		if s == nil {
			return
		}
		if want := sample.Key(s.Meta, s.Input); s.Meta.Key != want {
			t.Fatalf("accepted key %s, content's key %s", s.Meta.Key, want)
		}
		// The stored form (the collector's shards) must take every accepted sample too.
		stored, err := s.MarshalStored()
		if err != nil {
			t.Fatalf("MarshalStored refuses an accepted sample: %v", err)
		}
		if _, err := sample.ParseStored(stored); err != nil {
			t.Fatalf("ParseStored refuses what MarshalStored wrote: %v", err)
		}
	})
}

// FuzzReadTarKeyed is FuzzReadTar past the key check: each sample of the fuzzed tar gets the
// key of its fuzzed content, in its metadata and its members' names (samplefuzz.FixTar).
// Seeds: testdata/fuzz/FuzzReadTarKeyed.
func FuzzReadTarKeyed(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		samples, ok := checkReadTar(t, samplefuzz.FixTar(data))
		if !ok {
			return
		}
		// The shard builder's path: stored records parsed, then read back for the tar, which
		// must be the bytes WriteTar makes of the samples.
		var shard bytes.Buffer
		tw := sample.NewStoredTarWriter(&shard)
		for _, s := range samples {
			b, err := s.MarshalStored()
			if err != nil {
				t.Fatalf("MarshalStored refuses a sample ReadTar returned: %v", err)
			}
			st, err := sample.ParseStored(b)
			if err != nil {
				t.Fatalf("ParseStored refuses what MarshalStored wrote: %v", err)
			}
			meta, input, err := sample.StoredMembers(b)
			if err != nil {
				t.Fatalf("StoredMembers refuses what ParseStored read: %v", err)
			}
			if err := tw.Write(&st.Entry, meta, input); err != nil {
				t.Fatalf("StoredTarWriter refuses a sample ReadTar returned: %v", err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		if err := sample.WriteTar(&want, samples); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(shard.Bytes(), want.Bytes()) {
			t.Fatal("the shard's tar differs from WriteTar's of the same samples")
		}
	})
}

// TestFixKeysReachPastTheCheck checks the helper on the seeds: tampered content with a stale
// key is refused as it is and accepted once FixRecord/FixTar recomputed the key.
func TestFixKeysReachPastTheCheck(t *testing.T) {
	s, err := sample.New(sample.Meta{Model: "fashion", Version: "3", Node: "edge-1", Time: fixedTime, Prediction: 0,
		Scores: []float32{0.9, 0.1}, ScoresKind: sample.ScoresProbabilities, Confidence: map[string]float64{"max_softmax": 0.9}, Reason: "random",
		Input: sample.InputInfo{Name: "input", Datatype: "UINT8", Shape: []int64{4}, File: "input.bin"}}, []byte{1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.MarshalRecord()
	if err != nil {
		t.Fatal(err)
	}
	rec[len(rec)-1] ^= 0xff // the input changed: the key no longer matches
	if _, err := sample.UnmarshalRecord(rec); err == nil {
		t.Fatal("a tampered record was accepted")
	}
	if _, err := sample.UnmarshalRecord(samplefuzz.FixRecord(rec)); err != nil {
		t.Fatalf("FixRecord: %v", err)
	}
	var b bytes.Buffer
	s.Input = []byte{9, 9, 9, 9} // stale key
	if err := sample.WriteTar(&b, []*sample.Sample{s}); err == nil {
		t.Fatal("WriteTar took a sample with a stale key")
	}
	s.Input = []byte{1, 2, 3, 4}
	if err := sample.WriteTar(&b, []*sample.Sample{s}); err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(b.Bytes(), []byte{1, 2, 3, 4}, []byte{9, 9, 9, 9}, 1)
	if got, _, err := sample.ReadTar(bytes.NewReader(tampered), sample.Limits{}); err != nil || len(got) != 0 {
		t.Fatalf("a tampered tar gave %d samples, %v", len(got), err)
	}
	if got, rej, err := sample.ReadTar(bytes.NewReader(samplefuzz.FixTar(tampered)), sample.Limits{}); err != nil || len(got) != 1 {
		t.Fatalf("FixTar: %d samples, %v, %v", len(got), rej, err)
	}
}
