package trainer

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"math"

	"github.com/edgeloop/edgeloop/internal/fmnist"
)

// HoldoutBuckets is the number of buckets HeldOut hashes inputs into; one of them (bucket 0)
// is held out, so about 1 in HoldoutBuckets captured samples is for evaluation only.
const HoldoutBuckets = 10

// HeldOut says whether a captured sample with these decoded input values belongs to the
// held-out (evaluation) side of the split: the first 8 bytes of the SHA-256 of the values as
// little-endian float32, read as a big-endian unsigned integer, are 0 modulo HoldoutBuckets.
//
// The split hashes the input rather than the sample key, for two reasons: a trainer that
// loads samples with LoadSamples sees the values but not the keys, and the same image
// captured twice (different time or node, so a different key) must not land on both sides,
// which would let the training data leak into the evaluation. It is deterministic and
// independent of which other samples exist, so a sample stays on its side as shards are added.
// In Python: int.from_bytes(hashlib.sha256(x.astype('<f4').tobytes()).digest()[:8], 'big') % 10 == 0.
func HeldOut(input []float32) bool {
	h := sha256.New()
	WriteFloat32s(h, input)
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0])[:8])%HoldoutBuckets == 0
}

// SplitSamples divides labelled captured samples (as LoadSamples returns them) by
// HeldOut into the part a trainer may train on and the part the gate evaluates on.
func SplitSamples(ds *fmnist.Dataset) (train, heldOut *fmnist.Dataset) {
	train, heldOut = &fmnist.Dataset{}, &fmnist.Dataset{}
	for i := range ds.Len() {
		img := ds.Image(i)
		to := train
		if HeldOut(img) {
			to = heldOut
		}
		to.Images = append(to.Images, img...)
		to.Labels = append(to.Labels, ds.Labels[i])
	}
	return train, heldOut
}

// WriteFloat32s writes values to h as little-endian float32, a block at a time.
func WriteFloat32s(h hash.Hash, values []float32) {
	var buf [4 * 256]byte
	for len(values) > 0 {
		n := min(len(values), 256)
		for i, v := range values[:n] {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		h.Write(buf[:4*n])
		values = values[n:]
	}
}
