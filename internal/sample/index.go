package sample

import "time"

// IndexEntry is one line of a shard's JSONL index (`<shard>.index.jsonl` beside `<shard>.tar`
// in the object store): what the catalog, the dataset manifests and annotation tools need to
// know of a sample without opening the shard.
type IndexEntry struct {
	Key     string    `json:"key"`
	Model   string    `json:"model"`
	Version string    `json:"version"`
	Node    string    `json:"node"`
	Time    time.Time `json:"time"`
	// RequestID is the client's request id (the V2 request's "id"), when it sent one: how a
	// labeller gets from a request to its sample. Index lines written before it existed lack
	// it, which reads as "".
	RequestID      string `json:"request_id,omitempty"`
	Reason         string `json:"reason"`
	Prediction     int    `json:"prediction"`
	PredictedClass string `json:"predicted_class,omitempty"`
	// MaxSoftmax is the prediction's top-1 probability.
	MaxSoftmax float64 `json:"max_softmax"`
	// Input is the input member's name in the shard, such as "<key>.input.npy".
	Input string `json:"input"`
	// Bytes is the size of the sample's members (metadata and input) in the shard.
	Bytes int64 `json:"bytes"`
}

// Index returns the sample's index entry.
func (s *Sample) Index() IndexEntry {
	meta, _ := s.MetaJSON()
	return s.index(len(meta))
}

// index is Index for metadata JSON of metaLen bytes.
func (s *Sample) index(metaLen int) IndexEntry {
	m := s.Meta
	return IndexEntry{
		Key: m.Key, Model: m.Model, Version: m.Version, Node: m.Node, Time: m.Time, RequestID: m.RequestID, Reason: m.Reason,
		Prediction: m.Prediction, PredictedClass: m.PredictedClass, MaxSoftmax: m.Confidence["max_softmax"],
		Input: s.InputName(), Bytes: int64(metaLen + len(s.Input)),
	}
}
