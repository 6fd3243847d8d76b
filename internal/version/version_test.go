package version

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestBuildInfo(t *testing.T) {
	i := Get()
	if i.Version == "" || i.Revision == "" || !strings.HasPrefix(i.GoVersion, "go") {
		t.Fatalf("incomplete build info: %+v", i)
	}
	want := `
# HELP edgeloop_build_info A metric with a constant '1' value labelled by the component, version, revision and Go version of the running edgeloop build.
# TYPE edgeloop_build_info gauge
edgeloop_build_info{component="exporter",goversion="` + i.GoVersion + `",revision="` + i.Revision + `",version="` + i.Version + `"} 1
`
	if err := testutil.CollectAndCompare(NewCollector("exporter"), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
