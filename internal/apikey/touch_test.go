package apikey_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/apikey"
)

func TestToucherWritesAtMostOncePerInterval(t *testing.T) {
	clk := newClock(t0)
	store := newFakeStore()
	tc := apikey.NewToucher(store, apikey.ToucherOptions{Interval: time.Minute, Tick: time.Millisecond, Now: clk.Now})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- tc.Run(ctx) }()

	busy, idle := pulid.MustNew("key"), pulid.MustNew("key")
	// Each step: advance the clock, touch busy (if use), then expect writes of busy.
	for _, step := range []struct {
		name       string
		advance    time.Duration
		use        bool
		wantWrites int
	}{
		{"first use is written on the next tick", 0, true, 1},
		{"used again 10s later: not written", 10 * time.Second, true, 1},
		{"used again 59s after the write: not written", 49 * time.Second, true, 1},
		{"a minute after the write: written", time.Second, false, 2},
		{"no use since: nothing to write", 2 * time.Minute, false, 2},
		{"used again: written at once (last write long ago)", 0, true, 3},
	} {
		clk.Advance(step.advance)
		if step.use {
			tc.Touch(busy, clk.Now())
		}
		if step.wantWrites > store.touchesOf(busy) {
			eventually(t, step.name, func() bool { return store.touchesOf(busy) == step.wantWrites })
		}
		// Let many ticks pass, then check nothing extra was written.
		time.Sleep(20 * time.Millisecond)
		if got := store.touchesOf(busy); got != step.wantWrites {
			t.Fatalf("%s: writes = %d, want %d", step.name, got, step.wantWrites)
		}
	}
	if n := store.touchesOf(idle); n != 0 {
		t.Fatalf("never-used key written %d times", n)
	}
	cancel()
	if err := <-runDone; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestToucherFlushWritesPendingAtOnce(t *testing.T) {
	clk := newClock(t0)
	store := newFakeStore()
	tc := apikey.NewToucher(store, apikey.ToucherOptions{Now: clk.Now})
	id := pulid.MustNew("key")
	ctx := context.Background()

	for _, step := range []struct {
		name       string
		use        bool
		wantWrites int
	}{
		{"nothing used: nothing written", false, 0},
		{"used: written", true, 1},
		{"used again right away: shutdown flush still writes it", true, 2},
		{"nothing new: nothing written", false, 2},
	} {
		clk.Advance(time.Second)
		if step.use {
			tc.Touch(id, clk.Now())
		}
		if err := tc.Flush(ctx); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := store.touchesOf(id); got != step.wantWrites {
			t.Fatalf("%s: writes = %d, want %d", step.name, got, step.wantWrites)
		}
	}
}

func TestToucherBatches(t *testing.T) {
	store := newFakeStore()
	tc := apikey.NewToucher(store, apikey.ToucherOptions{BatchSize: 2})
	var keys []pulid.ID
	for range 5 {
		id := pulid.MustNew("key")
		keys = append(keys, id)
		tc.Touch(id, time.Now())
	}
	if err := tc.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls := store.touchCalls()
	if len(calls) != 3 {
		t.Fatalf("calls = %d, want 3", len(calls))
	}
	for _, c := range calls {
		if len(c.ids) > 2 {
			t.Fatalf("batch of %d ids", len(c.ids))
		}
	}
	for _, id := range keys {
		if n := store.touchesOf(id); n != 1 {
			t.Fatalf("key written %d times", n)
		}
	}
}

func TestToucherRetriesAfterFailure(t *testing.T) {
	clk := newClock(t0)
	store := newFakeStore()
	store.touchErr = errors.New("db down")
	tc := apikey.NewToucher(store, apikey.ToucherOptions{Now: clk.Now})
	id := pulid.MustNew("key")
	tc.Touch(id, t0)
	if err := tc.Flush(context.Background()); err == nil {
		t.Fatal("Flush hid the store error")
	}
	store.touchMu.Lock()
	store.touchErr = nil
	store.touchMu.Unlock()
	if err := tc.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := store.touchesOf(id); n != 2 {
		t.Fatalf("writes = %d, want 2 (the failed one retried)", n)
	}
}

func TestTouchDoesNotWaitForTheStore(t *testing.T) {
	store := newFakeStore()
	store.touchGate = make(chan struct{})
	tc := apikey.NewToucher(store, apikey.ToucherOptions{})
	id := pulid.MustNew("key")
	tc.Touch(id, time.Now())
	flushed := make(chan error, 1)
	go func() { flushed <- tc.Flush(context.Background()) }()
	time.Sleep(10 * time.Millisecond) // the flush is now stuck in the store

	done := make(chan struct{})
	go func() {
		for range 1000 {
			tc.Touch(id, time.Now())
			tc.Touch(pulid.MustNew("key"), time.Now())
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Touch blocked behind a slow store")
	}
	close(store.touchGate)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
}

func TestVerifyRecordsUse(t *testing.T) {
	clk := newClock(t0)
	store := newFakeStore()
	tc := apikey.NewToucher(store, apikey.ToucherOptions{Now: clk.Now})
	kr := newKeyring(t, clk)
	v := apikey.NewVerifier(kr, store, apikey.VerifierOptions{Now: clk.Now, Toucher: tc})
	p := mintParams(apikey.KindSecret, newIDs())
	m := mustMint(t, kr, p)
	rec := recordFor(p)
	store.put(m.Hash, rec)
	revoked := mustMint(t, kr, p)
	revokedRec := recordFor(p)
	revokedRec.RevokedAt = ptr(t0)
	store.put(revoked.Hash, revokedRec)

	for _, key := range []string{m.Key, m.Key, revoked.Key} {
		_, _, _ = v.Verify(context.Background(), key)
	}
	if n := store.touchesOf(rec.ID); n != 0 {
		t.Fatal("Verify wrote last_used_at synchronously")
	}
	if err := tc.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := store.touchesOf(rec.ID); n != 1 {
		t.Fatalf("live key written %d times, want 1", n)
	}
	if n := store.touchesOf(revokedRec.ID); n != 0 {
		t.Fatal("a rejected key was marked as used")
	}
}
