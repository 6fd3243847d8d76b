package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLeanDeps keeps the edge binary lean (issue 15, docs/deploy.md): nothing of client-go, the
// trainers, the retrain controller or the collector's server side is linked into it.
func TestLeanDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const mod = "github.com/edgeloop/edgeloop/"
	forbidden := []string{
		"k8s.io/",
		"sigs.k8s.io/",
		mod + "trainers/",
		mod + "retrain",
		mod + "collector",
		mod + "demo",
	}
	// Allowed for good: the GPU collector's Kubernetes pod attribution (docs/gpu.md) reads the
	// kubelet's pod-resources API with these generated gRPC stubs. The package imports only
	// google.golang.org/grpc and google.golang.org/protobuf, which the binary links anyway for
	// OTLP tracing; nothing of client-go or apimachinery.
	allowed := map[string]bool{"k8s.io/kubelet/pkg/apis/podresources/v1": true}
	deps := strings.Fields(string(out))
	seen := map[string]bool{}
	for _, d := range deps {
		seen[d] = true
		for _, f := range forbidden {
			if (d == strings.TrimSuffix(f, "/") || strings.HasPrefix(d, f)) && !allowed[d] {
				t.Errorf("the lean binary links %s (matches %q)", d, f)
			}
		}
	}
	// The exporter itself must be there, or this test checks an empty list.
	for _, want := range []string{mod + "exporter", mod + "internal/runtime/builtin", mod + "cmd/internal/cli"} {
		if !seen[want] {
			t.Errorf("the lean binary does not link %s", want)
		}
	}
	t.Logf("%d packages linked, none forbidden", len(deps))
}
