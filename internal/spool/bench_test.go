package spool

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkAppend measures one capture goroutine appending records: with the group commit
// (the default configuration), and with an fsync per record (SyncEachAppend with
// sync_records 1), the baseline that group commit exists to beat. Results: docs/benchmarks.md.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10} {
		for _, mode := range []string{"groupcommit", "fsync-each"} {
			b.Run(fmt.Sprintf("size=%dKiB/mode=%s", size>>10, mode), func(b *testing.B) {
				cfg := DefaultConfig()
				opts := Options{}
				if mode == "fsync-each" {
					cfg.SyncRecords = 1
					opts.SyncEachAppend = true
				}
				s, err := Open(b.TempDir(), cfg, opts)
				if err != nil {
					b.Fatal(err)
				}
				data := payload(1, size)
				ctx := context.Background()
				b.SetBytes(int64(size))
				b.ResetTimer()
				for range b.N {
					if _, err := s.Append(ctx, data); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}
