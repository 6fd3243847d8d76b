package main

import (
	"fmt"
	"strings"

	"github.com/edgeloop/edgeloop/retrain/gate"
)

// evalSetsFlag is the repeatable --eval-set flag of `model publish`.
type evalSetsFlag []string

func (l *evalSetsFlag) String() string     { return strings.Join(*l, ",") }
func (l *evalSetsFlag) Set(v string) error { *l = append(*l, v); return nil }

// describeCalibration is the fitted temperature in words.
func describeCalibration(r *gate.Report) string {
	if r.Calibration == nil {
		return "not fitted"
	}
	return fmt.Sprintf("%.3f (ECE %.4f → %.4f)", r.Calibration.Temperature, r.ECE, r.Calibration.ECEAfter)
}
