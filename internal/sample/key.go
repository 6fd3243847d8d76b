package sample

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"io"
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
	k := keyHash{h: sha256.New()}
	k.str(keyDomain)
	k.str(meta.Model)
	k.str(meta.Version)
	k.str(meta.Node)
	k.u64(uint64(meta.Time.Unix()))
	k.u32(uint32(meta.Time.Nanosecond()))
	k.str(meta.RequestID)
	k.u64(uint64(int64(meta.Prediction)))
	k.str(meta.PredictedClass)
	k.u32(uint32(len(meta.Scores)))
	for _, v := range meta.Scores {
		k.u32(math.Float32bits(v))
	}
	k.str(meta.ScoresKind)
	names := sortedKeys(meta.Confidence)
	k.u32(uint32(len(names)))
	for _, name := range names {
		k.str(name)
		k.u64(math.Float64bits(meta.Confidence[name]))
	}
	k.str(meta.Reason)
	k.str(meta.TraceID)
	k.str(meta.Input.Name)
	k.str(meta.Input.Datatype)
	k.u32(uint32(len(meta.Input.Shape)))
	for _, d := range meta.Input.Shape {
		k.u64(uint64(d))
	}
	k.str(meta.Input.File)
	k.u64(uint64(len(input)))
	k.h.Write(input)
	sum := k.h.Sum(nil)
	return hex.EncodeToString(sum[:16])
}

// keyHash writes the canonical encoding's primitives into a hash.
type keyHash struct {
	h   hash.Hash
	buf [8]byte
}

func (k *keyHash) u32(v uint32) {
	binary.BigEndian.PutUint32(k.buf[:4], v)
	k.h.Write(k.buf[:4])
}

func (k *keyHash) u64(v uint64) {
	binary.BigEndian.PutUint64(k.buf[:], v)
	k.h.Write(k.buf[:])
}

func (k *keyHash) str(s string) {
	k.u32(uint32(len(s)))
	io.WriteString(k.h, s)
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
