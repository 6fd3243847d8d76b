package sample

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"slices"
)

// keyDomain starts every key's hash input. A schema change that alters the canonical encoding
// changes the domain, so keys of the two versions never collide by accident.
const keyDomain = "edgeloop.sample.key.v1"

// Key returns the content-derived key of a sample: the lowercase hex of the first 16 bytes of
// the SHA-256 of a canonical binary encoding of meta and input. meta's SchemaVersion, Key and
// Label are left out, so labelling a sample later keeps its key, and a sample sent twice has
// the same key: the collector stores it once.
//
// The encoding does not depend on how the JSON was formatted, so a sender in any language can
// compute it; docs/wire-format.md specifies it byte by byte. In order, with integers
// big-endian, a string being its u32 byte length then its bytes, and a list its u32 length
// then its elements:
//
//	string keyDomain ("edgeloop.sample.key.v1")
//	string model, string version, string node
//	i64 time's Unix seconds, u32 its nanoseconds within the second
//	string request_id, i64 prediction, string predicted_class
//	list of scores, each the u32 IEEE-754 bits of the float32
//	string scores_kind
//	list of confidence entries sorted by name (bytewise): string name, u64 IEEE-754 bits
//	string reason, string trace_id
//	string input.name, string input.datatype, list of input.shape as i64, string input.file
//	u64 length of the input file, then its bytes
func Key(meta Meta, input []byte) string {
	// The encoding is built in one buffer and hashed in two writes: a write per field cost a
	// quarter of the hashing.
	b := make([]byte, 0, 512)
	b = appendStr(b, keyDomain)
	b = appendStr(b, meta.Model)
	b = appendStr(b, meta.Version)
	b = appendStr(b, meta.Node)
	b = binary.BigEndian.AppendUint64(b, uint64(meta.Time.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(meta.Time.Nanosecond()))
	b = appendStr(b, meta.RequestID)
	b = binary.BigEndian.AppendUint64(b, uint64(int64(meta.Prediction)))
	b = appendStr(b, meta.PredictedClass)
	b = binary.BigEndian.AppendUint32(b, uint32(len(meta.Scores)))
	for _, v := range meta.Scores {
		b = binary.BigEndian.AppendUint32(b, math.Float32bits(v))
	}
	b = appendStr(b, meta.ScoresKind)
	names := sortedKeys(meta.Confidence)
	b = binary.BigEndian.AppendUint32(b, uint32(len(names)))
	for _, name := range names {
		b = appendStr(b, name)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(meta.Confidence[name]))
	}
	b = appendStr(b, meta.Reason)
	b = appendStr(b, meta.TraceID)
	b = appendStr(b, meta.Input.Name)
	b = appendStr(b, meta.Input.Datatype)
	b = binary.BigEndian.AppendUint32(b, uint32(len(meta.Input.Shape)))
	for _, d := range meta.Input.Shape {
		b = binary.BigEndian.AppendUint64(b, uint64(d))
	}
	b = appendStr(b, meta.Input.File)
	b = binary.BigEndian.AppendUint64(b, uint64(len(input)))
	h := sha256.New()
	h.Write(b)
	h.Write(input)
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// appendStr appends a string of the canonical encoding: its u32 length, then its bytes.
func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// sortedKeys returns m's keys in byte order.
func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
