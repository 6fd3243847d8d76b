package demo

import (
	"fmt"
	"slices"
)

// defaultStrengths are the strengths `edgeloop demo --drift KIND` uses for a kind named without
// one: each takes the reference MLP from about 0.89 to between 0.37 and 0.61 accuracy
// (docs/benchmarks.md, "Label-free accuracy estimate"), a loss a retrain has something to win
// back from. The photometric one is the model's own (ModelDrift).
func defaultStrength(k Kind, model string) ImageDrift {
	switch k {
	case KindNoise:
		return ImageDrift{Kind: k, Sigma: 0.3}
	case KindRotation:
		return ImageDrift{Kind: k, Degrees: 20}
	case KindShift:
		return ImageDrift{Kind: k, Pixels: 2}
	case KindOcclusion:
		return ImageDrift{Kind: k, Size: 14}
	}
	return ImageDrift{Kind: KindPhotometric, Photometric: ModelDrift(model)}
}

// ParseDemoDrift reads `edgeloop demo --drift`: a kind alone (photometric, noise, rotation,
// shift, occlusion) at the demo's strength for it, or a kind with its strength as
// ParseImageDrift reads it ("rotation:30", "photometric:0.5,0.35"). Empty is the model's
// photometric drift. "none" is refused: the demo needs a drift to recover from.
func ParseDemoDrift(s, model string) (ImageDrift, error) {
	if s == "" {
		return defaultStrength(KindPhotometric, model), nil
	}
	if k := Kind(s); k == KindNone {
		return ImageDrift{}, fmt.Errorf("--drift none: the demo needs a drift to recover from; want one of %v", Kinds()[1:])
	} else if slices.Contains(Kinds(), k) {
		return defaultStrength(k, model), nil
	}
	d, err := ParseImageDrift(s)
	if err != nil {
		return ImageDrift{}, fmt.Errorf("--drift: %w", err)
	}
	if d.Kind == KindNone {
		return ImageDrift{}, fmt.Errorf("--drift none: the demo needs a drift to recover from")
	}
	return d, nil
}

// driftText says what the drift does, for the demo's drift event; the photometric drift keeps
// the form the demo has always printed ("contrast ×0.70, brightness +0.15").
func driftText(d ImageDrift) string {
	if d.Kind == KindPhotometric {
		return fmt.Sprintf("contrast ×%.2f, brightness %+.2f", d.Photometric.Contrast, d.Photometric.Brightness)
	}
	return d.Name()
}
