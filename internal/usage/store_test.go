package usage

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/schema"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
)

func TestLatencyBucket(t *testing.T) {
	last := len(schema.LatencyBoundsMS)
	for _, c := range []struct {
		ms   int64
		want int
	}{
		{0, 0}, {25, 0}, {26, 1}, {50, 1}, {51, 2}, {3200, 7}, {25600, last - 1}, {25601, last}, {1 << 40, last},
	} {
		if got := LatencyBucket(c.ms); got != c.want {
			t.Errorf("LatencyBucket(%d) = %d, want %d", c.ms, got, c.want)
		}
	}
}

// histogram reads the one rollup row's latency buckets.
func histogram(t testing.TB, client *ent.Client) []int64 {
	t.Helper()
	row, err := client.UsageDaily.Query().Only(auth.SystemContext(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	return []int64{row.LatLe25, row.LatLe50, row.LatLe100, row.LatLe200, row.LatLe400, row.LatLe800,
		row.LatLe1600, row.LatLe3200, row.LatLe6400, row.LatLe12800, row.LatLe25600, row.LatInf}
}

func TestRollupLatencyHistogram(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		r := newRecorder(t, db.Client, RecorderOptions{MaxWait: -1})
		s := newScope()
		at := time.Date(2026, 5, 5, 12, 0, 0, 0, time.UTC)
		// Bounds are inclusive: 25 ms is in lat_le_25, 26 ms in lat_le_50.
		elapsed := []int64{0, 25, 25, 26, 50, 51, 399, 400, 401, 25600, 25601, 90000, 7}
		want := make([]int64, len(latencyColumns))
		var events []Event
		for i, ms := range elapsed {
			events = append(events, s.event(fmt.Sprintf("h-%d", i), 200, 1, 1, ms, at))
			want[LatencyBucket(ms)]++
		}
		// Two batches, the second replaying the first half with other latencies: a
		// replay must not move a call to another bucket nor count it twice.
		recordAll(t, r, events[:7]...)
		var batch []Event
		for _, ev := range events[:7] {
			ev.ElapsedMS = 100000
			batch = append(batch, ev)
		}
		recordAll(t, r, append(batch, events[7:]...)...)
		got := histogram(t, db.Client)
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s = %d, want %d", latencyColumns[i], got[i], want[i])
			}
		}
		var sum int64
		for _, n := range got {
			sum += n
		}
		if sum != int64(len(elapsed)) {
			t.Errorf("histogram holds %d calls, want %d", sum, len(elapsed))
		}
		compareRollups(t, readRollups(t, db.Client), expectedRollups(events))
	})
}

// A batch can touch more rollup rows than one statement has parameters for (24 per row):
// the upsert must split, on SQLite's 32766 parameter limit too.
func TestRollupUpsertSplitsLargeBatches(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		ctx := auth.SystemContext(context.Background())
		d, err := detectDialect(ctx, db.Client)
		if err != nil {
			t.Fatal(err)
		}
		const n = maxBatchLimit
		events := make([]Event, n)
		at := time.Date(2026, 5, 5, 12, 0, 0, 0, time.UTC)
		for i := range events {
			events[i] = newScope().event(fmt.Sprintf("split-%05d", i), 200, 1, 2, int64(i*13), at)
		}
		inserted, err := writeBatch(ctx, db.Client, d, uniqueSorted(events))
		if err != nil {
			t.Fatal(err)
		}
		if len(inserted) != n {
			t.Fatalf("inserted %d, want %d", len(inserted), n)
		}
		compareRollups(t, readRollups(t, db.Client), expectedRollups(events))
	})
}
