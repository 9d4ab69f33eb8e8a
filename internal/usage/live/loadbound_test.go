package live

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/gsvdev/agentregistry/ent"
)

// gaugeDriver counts the queries in flight and remembers the most at once. Each query is
// held a little, so that loads running side by side overlap.
type gaugeDriver struct {
	dialect.Driver
	hold      time.Duration
	now, peak atomic.Int64
}

func (d *gaugeDriver) Query(ctx context.Context, query string, args, v any) error {
	n := d.now.Add(1)
	defer d.now.Add(-1)
	for p := d.peak.Load(); n > p && !d.peak.CompareAndSwap(p, n); p = d.peak.Load() {
	}
	time.Sleep(d.hold)
	return d.Driver.Query(ctx, query, args, v)
}

// One person opening many distinct filters at once (each starts a load of its own) must
// not take every pooled database connection: the usage recorder's commits, which every
// invoke waits for, share the pool. Loads run at most loadConcurrency at a time, and
// every subscriber still gets its first message.
func TestLoadsInFlightAreBounded(t *testing.T) {
	db := sqliteDB(t)
	g := &gaugeDriver{Driver: entsql.OpenDB(db.Dialect, db.SQL), hold: 10 * time.Millisecond}
	h := newHub(t, ent.NewClient(ent.Driver(g)), newMemory(t), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const filters = 6 * loadConcurrency
	var wg sync.WaitGroup
	errs := make(chan error, filters)
	for range filters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, err := h.Subscribe(ctx, Filter{TenantID: newScope().tenant})
			if err != nil {
				errs <- err
				return
			}
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				errs <- context.DeadlineExceeded
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("subscribe: %v", err)
	}
	if got := h.Groups(); got != filters {
		t.Fatalf("%d groups, want %d", got, filters)
	}
	if peak := g.peak.Load(); peak > loadConcurrency {
		t.Fatalf("%d queries in flight at once, want at most %d (one per load)", peak, loadConcurrency)
	}
}
