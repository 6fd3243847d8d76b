package gate_test

import (
	"testing"

	"github.com/edgeloop/edgeloop/retrain/gate"
	"github.com/edgeloop/edgeloop/retrain/gate/gatetest"
)

func TestBuiltinConformance(t *testing.T) {
	gatetest.Run(t, func(*testing.T) gate.Evaluator { return gate.Builtin{BatchSize: 16} })
}
