package sample_test

import (
	"bytes"
	"testing"

	"github.com/edgeloop/edgeloop/internal/sample"
)

// FuzzUnmarshalRecord feeds arbitrary bytes to UnmarshalRecord (seeds: testdata/fuzz). It must
// never panic; whatever it accepts must be valid and re-encode to the same record.
func FuzzUnmarshalRecord(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) { checkUnmarshalRecord(t, data) })
}

// checkUnmarshalRecord decodes data as a record and, when it is accepted, checks that the sample
// is valid and that the record round-trips to the same bytes. It returns the accepted sample
// (nil when refused) for the keyed target's further checks.
func checkUnmarshalRecord(t *testing.T, data []byte) *sample.Sample {
	s, err := sample.UnmarshalRecord(data)
	if err != nil {
		return nil
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("UnmarshalRecord returned an invalid sample: %v", err)
	}
	rec, err := s.MarshalRecord()
	if err != nil {
		t.Fatalf("MarshalRecord refuses what UnmarshalRecord accepted: %v", err)
	}
	again, err := sample.UnmarshalRecord(rec)
	if err != nil {
		t.Fatalf("UnmarshalRecord refuses what MarshalRecord wrote: %v", err)
	}
	rec2, err := again.MarshalRecord()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec, rec2) {
		t.Fatal("the record changed on a second round trip")
	}
	return s
}

// fuzzLimits keep each input cheap while leaving room for a few real samples.
var fuzzLimits = sample.Limits{MaxSamples: 8, MaxMemberBytes: 64 << 10, MaxTotalBytes: 1 << 20}

// FuzzReadTar feeds arbitrary bytes to ReadTar as a batch (seeds: testdata/fuzz). It must never
// panic; every sample it returns must be valid with a distinct key, and a tar WriteTar makes of
// them must read back as the same samples.
func FuzzReadTar(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) { checkReadTar(t, data) })
}

// checkReadTar reads data as a batch and checks what ReadTar returns: valid samples with
// distinct keys, rejections with errors, and a WriteTar of the samples that reads back the
// same. It returns the samples, and whether ReadTar took the batch, for the keyed target's
// further checks.
func checkReadTar(t *testing.T, data []byte) (samples []*sample.Sample, ok bool) {
	samples, rejected, err := sample.ReadTar(bytes.NewReader(data), fuzzLimits)
	if err != nil {
		if samples != nil || rejected != nil {
			t.Fatal("samples returned with an error")
		}
		return nil, false
	}
	seen := map[string]bool{}
	for _, s := range samples {
		if err := s.Validate(); err != nil {
			t.Fatalf("ReadTar returned an invalid sample: %v", err)
		}
		if seen[s.Meta.Key] {
			t.Fatalf("key %s returned twice", s.Meta.Key)
		}
		seen[s.Meta.Key] = true
	}
	for _, r := range rejected {
		if seen[r.Key] {
			t.Fatalf("key %s both returned and rejected", r.Key)
		}
		if r.Err == nil {
			t.Fatal("rejection without an error")
		}
	}
	var b bytes.Buffer
	if err := sample.WriteTar(&b, samples); err != nil {
		t.Fatalf("WriteTar refuses what ReadTar returned: %v", err)
	}
	again, rejected, err := sample.ReadTar(&b, sample.Limits{})
	if err != nil || len(rejected) != 0 || len(again) != len(samples) {
		t.Fatalf("reading WriteTar's output: %d of %d samples, %v, %v", len(again), len(samples), rejected, err)
	}
	for i := range again {
		assertSame(t, again[i], samples[i])
	}
	// The collector's stored record carries each sample's index line (request_id included):
	// it must parse back to the sample's own index entry.
	for _, s := range samples {
		rec, err := s.MarshalStored()
		if err != nil {
			t.Fatalf("MarshalStored refuses what ReadTar returned: %v", err)
		}
		st, err := sample.ParseStored(rec)
		if err != nil {
			t.Fatalf("ParseStored refuses what MarshalStored wrote: %v", err)
		}
		if st.Entry != s.Index() {
			t.Fatalf("stored index entry %+v, want %+v", st.Entry, s.Index())
		}
	}
	return samples, true
}
