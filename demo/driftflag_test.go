package demo

import (
	"strings"
	"testing"
)

func TestParseDemoDrift(t *testing.T) {
	for _, tc := range []struct {
		in, model string
		want      string // driftText, or the error's substring after "error: "
	}{
		{"", ModelMLP, "contrast ×0.70, brightness +0.15"},
		{"", ModelCNN, "contrast ×0.40, brightness +0.50"},
		{"photometric", ModelMLP, "contrast ×0.70, brightness +0.15"},
		{"rotation", ModelMLP, "rotation 20°"},
		{"noise", ModelMLP, "gaussian noise σ 0.3"},
		{"shift", ModelMLP, "shift 2 px right and down"},
		{"occlusion", ModelMLP, "black square 14×14"},
		{"rotation:30", ModelMLP, "rotation 30°"},
		{"photometric:0.5,0.35", ModelMLP, "contrast ×0.50, brightness +0.35"},
		{"none", ModelMLP, "error: the demo needs a drift to recover from"},
		{"blur", ModelMLP, "error: unknown kind"},
		{"rotation:x", ModelMLP, "error: is not a number"},
	} {
		d, err := ParseDemoDrift(tc.in, tc.model)
		if want, isErr := strings.CutPrefix(tc.want, "error: "); isErr {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("ParseDemoDrift(%q) = %v, %v; want an error with %q", tc.in, d, err, want)
			}
			continue
		}
		if err != nil || driftText(d) != tc.want {
			t.Errorf("ParseDemoDrift(%q, %s) = %q, %v; want %q", tc.in, tc.model, driftText(d), err, tc.want)
		}
	}
}
