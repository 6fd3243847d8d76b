package classify

import "math"

// CalibratedTop1 returns the top-1 probability after temperature scaling, given invT = 1/T
// and top, the index of the row's highest score (Scores.Class): for logits z the top-1
// probability of softmax(z/T), 1 / Σ_j e^((z_j − z_top)/T); for probabilities p, that of
// p^(1/T) renormalised, 1 / Σ_j (p_j/p_top)^(1/T), which is the same thing with z = ln p. The
// row must already have scored (finite values). Every exponent is ≤ 0, so the fast
// expNonPositive serves: the exporter calls this once per prediction of a calibrated version,
// on the request path.
func CalibratedTop1(row []float32, top int, kind OutputKind, invT float64) float64 {
	var sum float64
	if kind == Logits {
		zt := float64(row[top])
		for _, z := range row {
			d := min((float64(z)-zt)*invT, 0)
			sum += expNonPositive(max(d, minExponent))
		}
		return 1 / sum
	}
	pt := float64(row[top])
	if !(pt > 0) {
		return 0
	}
	for _, p := range row {
		if p > 0 {
			d := min(math.Log(float64(p)/pt)*invT, 0)
			sum += expNonPositive(max(d, minExponent))
		}
	}
	return 1 / sum
}
