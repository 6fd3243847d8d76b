package demo

// Drift is a brightness and contrast shift of the input stream, x' = clamp(Contrast·x +
// Brightness, 0, 1): what a new camera, a dirty lens or different lighting does to a
// deployed model's inputs. The demo's default (contrast 0.7, brightness +0.15) takes the base
// model from about 0.88 to about 0.47 accuracy and its confidence down with it (a PSI near
// 0.5 against the clean reference), while a model retrained on a few hundred labelled shifted
// images recovers to about 0.85 (docs/demo.md).
type Drift struct {
	Contrast   float32
	Brightness float32
}

// DefaultDrift is the demo's shift for the Go MLP.
var DefaultDrift = Drift{Contrast: 0.7, Brightness: 0.15}

// ModelDrift is the demo's shift for a model kind. The CNN shrugs off DefaultDrift (0.81 →
// 0.80 on 2,000 test images: its convolutions see edges, which a mild contrast change keeps),
// so it gets a washed-out image, contrast 0.4 and brightness +0.5, which takes it to about 0.45.
func ModelDrift(model string) Drift {
	if model == ModelCNN {
		return Drift{Contrast: 0.4, Brightness: 0.5}
	}
	return DefaultDrift
}

// Apply writes the shifted image into dst (len(src)) and returns it.
func (d Drift) Apply(dst, src []float32) []float32 {
	for i, v := range src {
		dst[i] = min(1, max(0, d.Contrast*v+d.Brightness))
	}
	return dst
}
