package sampler

import (
	"hash/maphash"
	"math"
	"math/bits"
	"math/rand/v2"
	"testing"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

func TestImageLayout(t *testing.T) {
	for _, tc := range []struct {
		shape []int64
		n     int
		want  layout
		ok    bool
	}{
		{[]int64{784}, 784, layout{h: 28, w: 28, c: 1}, true},
		{nil, 784, layout{h: 28, w: 28, c: 1}, true}, // no shape: the flat length decides
		{[]int64{28, 28}, 784, layout{h: 28, w: 28, c: 1}, true},
		{[]int64{1, 28, 28}, 784, layout{h: 28, w: 28, c: 1, chw: true}, true},
		{[]int64{3, 224, 224}, 3 * 224 * 224, layout{h: 224, w: 224, c: 3, chw: true}, true},
		{[]int64{224, 224, 3}, 3 * 224 * 224, layout{h: 224, w: 224, c: 3}, true},
		{[]int64{32, 48, 4}, 32 * 48 * 4, layout{h: 32, w: 48, c: 4}, true},
		{[]int64{785}, 785, layout{}, false}, // not a square
		{[]int64{49}, 49, layout{}, false},   // 7×7: too small
		{[]int64{64}, 64, layout{h: 8, w: 8, c: 1}, true},
		{[]int64{784}, 783, layout{}, false},        // shape and values disagree
		{[]int64{28, 28}, 700, layout{}, false},     // likewise
		{[]int64{5, 30, 30}, 4500, layout{}, false}, // 5 channels: not an image
		{[]int64{2, 3, 4, 5}, 120, layout{}, false}, // rank 4
		{[]int64{-28, -28}, 784, layout{}, false},   // nonsense
		{[]int64{1 << 40, 1 << 40}, 784, layout{}, false},
		{[]int64{100, 6}, 600, layout{}, false}, // 6 wide: too narrow
	} {
		got, ok := imageLayout(tc.shape, tc.n)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("imageLayout(%v, %d) = %+v, %v; want %+v, %v", tc.shape, tc.n, got, ok, tc.want, tc.ok)
		}
	}
}

// TestImageHashLayouts checks that one picture hashes alike whatever its layout: grey, or its
// grey value in three channels, channels first or last.
func TestImageHashLayouts(t *testing.T) {
	grey := image(7)
	chw := make([]float32, 3*784)
	hwc := make([]float32, 3*784)
	for i, v := range grey {
		for c := range 3 {
			chw[c*784+i] = v
			hwc[i*3+c] = v
		}
	}
	seed := maphash.MakeSeed()
	want := sign(seed, grey, []int64{28, 28}, true).percept
	for _, tc := range []struct {
		in    []float32
		shape []int64
	}{
		{grey, []int64{784}},
		{grey, []int64{1, 28, 28}},
		{chw, []int64{3, 28, 28}},
		{hwc, []int64{28, 28, 3}},
	} {
		if got := sign(seed, tc.in, tc.shape, true).percept; got != want {
			t.Errorf("shape %v: pHash %016x, want %016x", tc.shape, got, want)
		}
	}
	if sign(seed, grey, []int64{28, 28}, false).percept != 0 {
		t.Error("the perceptual hash was computed with near-duplicate suppression off")
	}
}

func TestContentHash(t *testing.T) {
	seed := maphash.MakeSeed()
	a := image(1)
	b := append([]float32(nil), a...)
	if contentHash(seed, a) != contentHash(seed, b) {
		t.Fatal("identical inputs hash differently")
	}
	b[400] = math.Nextafter32(b[400], 2) // one value, one ulp
	if contentHash(seed, a) == contentHash(seed, b) {
		t.Fatal("inputs one ulp apart hash alike")
	}
	long := make([]float32, 3*224*224) // spans many buffer fills
	h := contentHash(seed, long)
	long[len(long)-1] = 1
	if contentHash(seed, long) == h {
		t.Fatal("a change in the last value of a long input is not seen")
	}
}

// TestVectorHash checks the signature of inputs that are not images: small changes keep it,
// a different vector changes it, short vectors and non-finite values work.
func TestVectorHash(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	v := make([]float32, 300)
	for i := range v {
		v[i] = float32(math.Sin(float64(i)/7) + 0.3*math.Sin(float64(i)/2.3))
	}
	h := vectorHash(v)
	close := make([]float32, len(v))
	for i, x := range v {
		close[i] = x + float32(r.NormFloat64()*0.01)
	}
	if d := bits.OnesCount64(h ^ vectorHash(close)); d > 4 {
		t.Errorf("a slightly perturbed vector is %d bits away", d)
	}
	other := make([]float32, len(v))
	for i := range other {
		other[i] = float32(math.Cos(float64(i) / 3))
	}
	if d := bits.OnesCount64(h ^ vectorHash(other)); d <= 4 {
		t.Errorf("a different vector is only %d bits away", d)
	}
	if vectorHash(nil) != 0 {
		t.Error("empty vector")
	}
	short := []float32{2, 0, 3, 0}
	if got := vectorHash(short); bits.OnesCount64(got) != 2 {
		t.Errorf("vectorHash(%v) = %064b: want the two values above the mean", short, got)
	}
	nan := append([]float32(nil), v...)
	nan[10], nan[200] = float32(math.NaN()), float32(math.Inf(1))
	if d := bits.OnesCount64(h ^ vectorHash(nan)); d > 4 {
		t.Errorf("two non-finite values moved the signature %d bits", d)
	}
}

// TestSignatureOnFashionMNIST measures the perceptual hash on the reference data set, the
// figures docs/sampler.md quotes: Gaussian noise (σ = 0.02) keeps nearly every image within
// the default 4 bits, while different images, even of one class, are almost never that close.
func TestSignatureOnFashionMNIST(t *testing.T) {
	dir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	d, err := fmnist.Load(dir, fmnist.Test)
	if err != nil {
		t.Fatal(err)
	}
	l := layout{h: 28, w: 28, c: 1}
	const images = 1000
	hashes := make([]uint64, images)
	noiseNear := 0
	for i := range images {
		hashes[i] = imageHash(d.Image(i), l)
		if bits.OnesCount64(hashes[i]^imageHash(noisy(d.Image(i), 0.02, uint64(i)), l)) <= 4 {
			noiseNear++
		}
	}
	var sameNear, samePairs, otherNear, otherPairs int
	for i := range images {
		for j := i + 1; j < images; j++ {
			near := bits.OnesCount64(hashes[i]^hashes[j]) <= 4
			if d.Labels[i] == d.Labels[j] {
				samePairs++
				if near {
					sameNear++
				}
			} else {
				otherPairs++
				if near {
					otherNear++
				}
			}
		}
	}
	t.Logf("noisy copies within 4 bits: %d/%d; pairs within 4 bits: same class %d/%d, other classes %d/%d",
		noiseNear, images, sameNear, samePairs, otherNear, otherPairs)
	if noiseNear < images*95/100 {
		t.Errorf("only %d of %d noisy copies within 4 bits, want at least 95%%", noiseNear, images)
	}
	if sameNear > samePairs/200 {
		t.Errorf("%d of %d pairs of different images of one class within 4 bits, want at most 0.5%%", sameNear, samePairs)
	}
	if otherNear > otherPairs/2000 {
		t.Errorf("%d of %d pairs of images of different classes within 4 bits, want at most 0.05%%", otherNear, otherPairs)
	}
}

func TestRingWraps(t *testing.T) {
	var r ring
	for i := range 5 {
		r.add(entry{signature: signature{content: uint64(i), n: 1}, at: int64(i)}, 3)
	}
	// Entries 2, 3, 4 remain; 0 and 1 were overwritten.
	for i, want := range []skipReason{skipNone, skipNone, skipDuplicate, skipDuplicate, skipDuplicate} {
		if got := r.find(signature{content: uint64(i), percept: 1 << 40, n: 1}, 5, 100, -1); got != want {
			t.Errorf("content %d: %v, want %v", i, got, want)
		}
	}
	// A window of 2 at time 5 covers entries 4 only (3 is exactly 2 old: outside).
	if got := r.find(signature{content: 3, n: 1}, 5, 2, -1); got != skipNone {
		t.Errorf("entry at the window's edge: %v, want none", got)
	}
	// Different lengths never match.
	if got := r.find(signature{content: 4, n: 2}, 5, 100, 64); got != skipNone {
		t.Errorf("different length: %v", got)
	}
}
