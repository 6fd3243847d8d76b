package trainer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/npy"
)

// SampleStats counts the labelled samples a run read from shards (internal/dataset's Stats
// in the form metrics.json has always had, which the PyTorch job writes too).
type SampleStats struct {
	// Shards is the number of shard files read.
	Shards int `json:"shards"`
	// Labelled samples fit the data's shape and classes and were read.
	Labelled int `json:"labelled"`
	// Unlabelled samples have no label yet and were skipped.
	Unlabelled int `json:"unlabelled"`
	// Rejected samples were refused (all reasons together; RejectedByReason has them apart).
	Rejected int `json:"rejected"`
	// Duplicates are samples whose input was seen before (the content key); the first is kept.
	Duplicates int `json:"duplicates"`
	// HeldOut labelled samples were kept out of training: the evaluation gate's side of the
	// split (dataset.HeldOut).
	HeldOut int `json:"held_out,omitempty"`
	// RejectedByReason counts refused samples by internal/dataset's reason ("shape", "dtype",
	// "label", "npy", "nonfinite", "meta"); metrics.json has it at its top level, where the
	// PyTorch job writes it too.
	RejectedByReason map[string]int `json:"-"`
}

// sampleStats converts the shared reader's counts.
func sampleStats(st dataset.Stats) SampleStats {
	out := SampleStats{Shards: st.Shards, Labelled: st.Labelled, Unlabelled: st.Unlabelled,
		Rejected: st.RejectedTotal(), Duplicates: st.Duplicates}
	if len(st.Rejected) > 0 {
		out.RejectedByReason = st.Rejected
	}
	return out
}

// sampleShape is the per-sample shape of the first labelled sample of shards whose label
// names a class and whose input decodes, with leading 1-dimensions dropped ([1,3,8,8] is
// [3,8,8]): the shape of the data when the shards are all the data there is. ReadLabelled
// then refuses every sample that does not fit it, counted under "shape".
func sampleShape(shards, labelFiles, classes []string) ([]int64, error) {
	posted := map[string]json.RawMessage{}
	for _, f := range labelFiles {
		if err := dataset.ReadLabelFile(f, posted); err != nil {
			return nil, err
		}
	}
	files, err := dataset.ShardFiles(shards)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		samples, err := readShardFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, s := range samples {
			raw, ok := posted[s.Key]
			if !ok {
				if raw, err = s.OwnLabel(); err != nil {
					continue
				}
			}
			if len(raw) == 0 || string(raw) == "null" || string(raw) == `""` {
				continue
			}
			if _, err := dataset.ParseLabel(raw, classes); err != nil || len(s.NPY) == 0 {
				continue
			}
			a, err := npy.Read(bytes.NewReader(s.NPY))
			if err != nil {
				continue
			}
			shape := a.Shape
			for len(shape) > 1 && shape[0] == 1 {
				shape = shape[1:]
			}
			out := make([]int64, len(shape))
			for i, d := range shape {
				out[i] = int64(d)
			}
			return out, nil
		}
	}
	return nil, errors.New("no labelled sample whose label names a class and whose input.npy decodes: nothing to take the input shape from")
}

func readShardFile(name string) ([]*dataset.ShardSample, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return dataset.ReadShard(f)
}
