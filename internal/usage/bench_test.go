package usage

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/internal/database/dbtest"
)

// BenchmarkRecordParallel measures durable Record throughput with many concurrent
// callers (as the gateway has), on every test database. records/s is what the gateway
// can meter; tx/s shows how well calls share transactions.
func BenchmarkRecordParallel(b *testing.B) {
	for _, driver := range dbtest.Drivers(b) {
		b.Run(driver, func(b *testing.B) {
			db := dbtest.Open(b, driver)
			var txs atomic.Int64
			r := newRecorder(b, db.Client, RecorderOptions{OnCommit: func([]Event) { txs.Add(1) }})
			scopes := []scope{newScope(), newScope(), newScope(), newScope()}
			var seq atomic.Int64
			at := time.Now()
			b.SetParallelism(32) // gateway handlers wait on I/O: many more callers than CPUs
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := seq.Add(1)
					ev := scopes[n%4].event("bench-"+strconv.FormatInt(n, 10), 200, 100, 50, 120, at)
					if err := r.Record(context.Background(), ev); err != nil {
						b.Error(err)
						return
					}
				}
			})
			secs := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N)/secs, "records/s")
			b.ReportMetric(float64(txs.Load())/secs, "tx/s")
			b.ReportMetric(0, "ns/op") // per-op time is meaningless for a parallel, batched call
		})
	}
}
