package usage

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/internal/auth"
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
			r := newRecorder(b, db, RecorderOptions{OnCommit: func([]Event) { txs.Add(1) }})
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

// BenchmarkWriteBatch measures one batch's write, one at a time: at a steady 1,000
// calls/s a batch holds one or two calls, and its time is what every durable invoke
// waits for.
func BenchmarkWriteBatch(b *testing.B) {
	for _, driver := range dbtest.Drivers(b) {
		for _, size := range []int{1, 2, 16, 256} {
			b.Run(driver+"/"+strconv.Itoa(size), func(b *testing.B) {
				db := dbtest.Open(b, driver)
				ctx := auth.SystemContext(context.Background())
				st := newStore(db)
				b.Cleanup(func() { _ = st.close() })
				s := newScope()
				at := time.Now()
				events := make([]Event, size)
				var seq int
				for b.Loop() {
					for i := range events {
						seq++
						events[i] = s.event("bench-"+strconv.Itoa(seq), 200, 100, 50, 120, at)
					}
					if _, err := st.write(ctx, uniqueSorted(events)); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
