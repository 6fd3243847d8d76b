//go:build integration

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/testenv"
)

// TestFleetTiny runs the simulator at a tiny scale, each kind of sender in turn, against a
// real MinIO and the collector built from this tree, so that it cannot rot: every offered
// sample is acknowledged after the drain, found in exactly one shard, and the summary holds
// numbers that a run must have (latencies, the collector's CPU and RSS, its sockets).
func TestFleetTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no MinIO or collector process")
	}
	minio := testenv.Tool(t, "minio")
	// FLEET_EDGELOOP runs a binary built elsewhere instead of building the working tree.
	bin := os.Getenv("FLEET_EDGELOOP")
	if bin == "" {
		var err error
		if bin, err = buildEdgeloop(t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		sender, verify string
		spool          bool
		netFraction    float64
	}{
		{sender: "real", verify: "tar"},
		{sender: "real", verify: "index", spool: true},
		{sender: "lite", verify: "tar", netFraction: 0.5},
	} {
		t.Run(tc.sender+"-"+tc.verify, func(t *testing.T) {
			o, err := parseFlags([]string{
				"-nodes", "12", "-rate", "4", "-ramp", "500ms", "-duration", "4s", "-progress", "1s",
				"-batch-delay", "200ms", "-shard-max-age", "500ms", "-seed", "7", "-drain-timeout", "2m",
				"-sender", tc.sender, "-verify", tc.verify, "-work", t.TempDir(),
				"-edgeloop", bin, "-minio", minio,
			}, os.Stderr)
			if err != nil {
				t.Fatal(err)
			}
			o.Spool = tc.spool
			if tc.netFraction > 0 {
				o.NetFraction, o.NetGroups, o.NetLatency = tc.netFraction, 2, 20*time.Millisecond
			}
			var log bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			s, err := run(ctx, o, &log)
			if err != nil {
				t.Fatalf("%v\n%s", err, log.String())
			}
			c := s.Conservation
			if !c.Pass || c.Lost != 0 || c.Twice != 0 || c.StoredUnacked != 0 {
				t.Fatalf("conservation: %+v\n%s", c, log.String())
			}
			// Every sample the arrivals made was acknowledged and stored: the drain is complete.
			if c.Acknowledged < 50 || c.Stored != c.Acknowledged || c.Shards < 1 {
				t.Errorf("acknowledged %d, stored %d in %d shards: want at least 50, all stored", c.Acknowledged, c.Stored, c.Shards)
			}
			if s.Acknowledged == 0 || s.AckedPerSecond <= 0 || s.BatchLatency.Count == 0 || s.SampleLatency.P99 <= 0 {
				t.Errorf("window: acknowledged %d (%.1f/s), %d batches, sample p99 %.3fs", s.Acknowledged, s.AckedPerSecond, s.BatchLatency.Count, s.SampleLatency.P99)
			}
			// The sample latency includes batch_delay: most samples are the first of their
			// batch and wait the whole 200ms.
			if s.SampleLatency.P50 < 0.1 {
				t.Errorf("sample p50 %.3fs: want it to include the 200ms batch_delay", s.SampleLatency.P50)
			}
			if s.Collector.PID == 0 || s.Collector.CPUSeconds <= 0 || s.Collector.RSSPeakMiB <= 0 || s.Collector.SocketsMax < 1 {
				t.Errorf("collector: %+v", s.Collector)
			}
			if s.Batches < 1 || len(s.Progress) < 3 {
				t.Errorf("%.0f batches, %d progress lines", s.Batches, len(s.Progress))
			}
			if !strings.Contains(log.String(), "conservation   "+tc.verify+":") {
				t.Errorf("no summary in the log:\n%s", log.String())
			}
			var back Summary
			b, _ := json.Marshal(s)
			if err := json.Unmarshal(b, &back); err != nil || back.Nodes != 12 {
				t.Errorf("summary does not round-trip: %v", err)
			}
			t.Logf("%s sender: %d acknowledged (%.0f/s), batch p99 %.3fs, collector %.2f cores, %.0f MiB, %d sockets",
				tc.sender, c.Acknowledged, s.AckedPerSecond, s.BatchLatency.P99, s.Collector.Cores, s.Collector.RSSPeakMiB, s.Collector.SocketsMax)
		})
	}
}
