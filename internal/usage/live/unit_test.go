package live

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/usage"
)

func TestEncodeSplitsUnderLimit(t *testing.T) {
	a := newScope()
	at := time.Date(2026, 11, 22, 1, 2, 3, 456789000, time.UTC)
	var events []usage.Event
	for i := range 1000 {
		ev := a.event(200+i%400, int64(i), int64(2*i), int64(i%1000), at)
		ev.RequestID = strings.Repeat("r", 120) + fmt.Sprintf("%08d", i)
		ev.ErrorCode = strings.Repeat("é", 32) // 64 bytes
		events = append(events, ev)
	}
	payloads, skipped := encodeEvents(events, maxPayload)
	if skipped != 0 {
		t.Fatalf("skipped %d", skipped)
	}
	var got []usage.Event
	for _, p := range payloads {
		if len(p.data) > maxPayload {
			t.Fatalf("payload of %d bytes", len(p.data))
		}
		m, err := decodeMessage(p.data)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Events) != p.events {
			t.Fatalf("payload carries %d events, says %d", len(m.Events), p.events)
		}
		for i := range m.Events {
			got = append(got, m.Events[i].event())
		}
	}
	if len(got) != len(events) {
		t.Fatalf("decoded %d events, want %d", len(got), len(events))
	}
	for i := range events {
		want := events[i]
		if !got[i].StartedAt.Equal(want.StartedAt) {
			t.Fatalf("event %d time %v, want %v", i, got[i].StartedAt, want.StartedAt)
		}
		got[i].StartedAt = want.StartedAt
		if got[i] != want {
			t.Fatalf("event %d = %+v, want %+v", i, got[i], want)
		}
	}
	t.Logf("1000 large events -> %d payloads", len(payloads))

	// An event that cannot fit alone is skipped, not sent oversized.
	huge := events[0]
	huge.RequestID = strings.Repeat("x", maxPayload)
	if p, skipped := encodeEvents([]usage.Event{huge, events[1]}, maxPayload); skipped != 1 || len(p) != 1 || p[0].events != 1 {
		t.Fatalf("huge event: %d payloads, %d skipped", len(p), skipped)
	}
	if _, err := decodeMessage([]byte(`{"v":2,"e":[]}`)); err == nil {
		t.Fatal("unknown version accepted")
	}
}

// The index finds exactly the groups a brute-force scan of every filter finds.
func TestIndexMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(vals []pulid.ID) pulid.ID {
		if rng.IntN(2) == 0 {
			return ""
		}
		return vals[rng.IntN(len(vals))]
	}
	dimVals := make([][]pulid.ID, numDims)
	for d := range dimVals {
		for range 3 {
			dimVals[d] = append(dimVals[d], pulid.MustNew("xxx"))
		}
	}
	x := newIndex()
	var groups []*group
	seen := map[groupKey]bool{}
	for range 300 {
		var k groupKey
		for d := range numDims {
			k.ids[d] = pick(dimVals[d])
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		g := newGroup(k, 0)
		groups = append(groups, g)
		x.add(g)
	}
	for range 2000 {
		var ev ids
		for d := range numDims {
			ev[d] = dimVals[d][rng.IntN(3)]
		}
		if rng.IntN(4) == 0 {
			ev[dimKey] = "" // a call without a key
		}
		got := x.match(ev, nil)
		var want []*group
		for _, g := range groups {
			if g.key.matches(&ev) {
				want = append(want, g)
			}
		}
		in := make(map[*group]bool, len(got))
		for _, g := range got {
			if in[g] {
				t.Fatalf("event %v: group %v found twice", ev, g.key)
			}
			in[g] = true
		}
		if len(got) != len(want) {
			t.Fatalf("event %v: index found %d groups, brute force %d", ev, len(got), len(want))
		}
		for _, g := range want {
			if !in[g] {
				t.Fatalf("event %v: index missed %v", ev, g.key)
			}
		}
	}
	for _, g := range groups {
		x.remove(g)
	}
	if len(x.all) != 0 {
		t.Fatal("match-all groups left")
	}
	for d := range x.byDim {
		if len(x.byDim[d]) != 0 {
			t.Fatalf("dimension %d not empty", d)
		}
	}
}

func TestStateWindowRollAndRecent(t *testing.T) {
	a := newScope()
	now := time.Date(2026, 1, 31, 23, 59, 30, 0, time.UTC)
	st := newState(Filter{}.key(), now)
	for i := range 30 {
		ev := a.event(200, 1, 1, int64(i+1), now.Add(-time.Duration(i)*time.Second))
		st.apply(&ev, now, 20)
	}
	old := a.event(500, 1, 1, 999, now.Add(-2*time.Minute)) // today, but out of the minute
	st.apply(&old, now, 20)
	var scratch []int64
	m := st.minute(now, &scratch)
	if m.Requests != 30 || math.Abs(m.P50Ms-15.5) > 1e-9 || math.Abs(m.P95Ms-28.55) > 1e-9 {
		t.Fatalf("minute = %+v", m)
	}
	if st.dayT.Requests != 31 || st.dayT.Errors != 1 || st.periodT.Requests != 31 {
		t.Fatalf("day %+v period %+v", st.dayT, st.periodT)
	}
	if len(st.recent) != 20 || st.recent[0].ElapsedMS != 1 || st.recent[19].ElapsedMS != 20 {
		t.Fatalf("recent: %d calls, first %d ms, last %d ms", len(st.recent), st.recent[0].ElapsedMS, st.recent[len(st.recent)-1].ElapsedMS)
	}
	// 40 s later (past midnight): the 10 oldest calls have left the minute.
	later := now.Add(40 * time.Second)
	if n := st.minuteCount(later); n != 20 {
		t.Fatalf("40 s later: %d calls in the minute, want 20", n)
	}
	if !st.roll(dayOf(later)) {
		t.Fatal("no roll at midnight")
	}
	// A new day and, the period being the calendar month, a new month.
	if st.dayT != (Totals{}) || st.periodT != (Totals{}) || !st.periodStart.Equal(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("after roll: day %+v period %+v from %v", st.dayT, st.periodT, st.periodStart)
	}
	// Yesterday's late call counts in neither.
	late := a.event(200, 1, 1, 1, now)
	st.apply(&late, later, 20)
	if st.dayT.Requests != 0 || st.periodT.Requests != 0 {
		t.Fatalf("late call counted: day %+v period %+v", st.dayT, st.periodT)
	}

	// A given period start does not roll over at the month.
	custom := newState(Filter{PeriodStart: now.AddDate(0, 0, -40)}.key(), now)
	ev := a.event(200, 1, 1, 1, now)
	custom.apply(&ev, now, 20)
	custom.roll(dayOf(later))
	if custom.periodT.Requests != 1 {
		t.Fatalf("custom period rolled over: %+v", custom.periodT)
	}
}

// Latencies beyond the sample cap keep memory bounded while the count stays exact.
func TestMinuteSamplesBounded(t *testing.T) {
	a := newScope()
	now := time.Now()
	st := newState(Filter{}.key(), now)
	for i := range 10 * MaxMinuteSamples {
		ev := a.event(200, 0, 0, int64(i), now)
		st.apply(&ev, now, 20)
	}
	if len(st.samples) != MaxMinuteSamples {
		t.Fatalf("%d samples", len(st.samples))
	}
	var scratch []int64
	m := st.minute(now, &scratch)
	if m.Requests != 10*MaxMinuteSamples {
		t.Fatalf("count %d", m.Requests)
	}
	// The samples are the latest calls.
	if m.P50Ms < float64(9*MaxMinuteSamples) {
		t.Fatalf("p50 %v from stale samples", m.P50Ms)
	}
}

// A message derives each key once however many subscribers ask at the same time; a copy
// made for one slow subscriber says Resynced and derives its own.
func TestStatsMemo(t *testing.T) {
	g := newGroup(Filter{}.key(), 0)
	g.st = newState(g.key, time.Now())
	st := g.stats(time.Now(), new([]int64))
	var calls atomic.Int64
	derive := func(v string) func() any {
		return func() any { calls.Add(1); time.Sleep(time.Millisecond); return v }
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if got := st.Memo("a", derive("A")); got != "A" {
				t.Errorf("Memo(a) = %v", got)
			}
		})
	}
	wg.Wait()
	if got := st.Memo("b", derive("B")); got != "B" || calls.Load() != 2 {
		t.Fatalf("Memo(b) = %v after %d derivations, want B after 2", got, calls.Load())
	}

	cp := st.resyncedCopy()
	if !cp.Resynced || st.Resynced {
		t.Fatalf("copy resynced %v, original %v", cp.Resynced, st.Resynced)
	}
	if got := cp.Memo("a", derive("copy")); got != "copy" {
		t.Fatalf("the copy shared its original's rendering: %v", got)
	}

	var zero Stats // not built by the hub: nothing to share
	zero.Memo("a", derive("1"))
	zero.Memo("a", derive("2"))
	if calls.Load() != 5 {
		t.Fatalf("%d derivations, want 5", calls.Load())
	}

	// A derivation that yields nothing or panics is not kept: the next caller derives.
	if got := st.Memo("c", func() any { return nil }); got != nil {
		t.Fatalf("Memo(c) = %v, want nil", got)
	}
	func() {
		defer func() { _ = recover() }()
		st.Memo("c", func() any { panic("render failed") })
	}()
	if got := st.Memo("c", derive("C")); got != "C" {
		t.Fatalf("after a nil and a panic, Memo(c) = %v, want C", got)
	}
}

// A flush hands out a cohort's messages (one websocket connection's subscriptions) back
// to back and in one chunk, so that the connection can write them in one batch; chunks
// stay near deliverChunk whatever the cohorts.
func TestChunksKeepCohortsTogether(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	firstChunk := map[int]uint64{} // the cohort delivered first in each round
	for round := range 50 {
		var sends []send
		maxCohort := 1 + rng.IntN(30)
		for range rng.IntN(500) {
			// Cohort 0 (no cohort) is common: the legacy protocol, tests, other callers.
			c := uint64(rng.IntN(40))
			sends = append(sends, send{s: &subscriber{cohort: c}})
		}
		// Cap each cohort's size at maxCohort, as the per-connection cap does.
		count := map[uint64]int{}
		kept := sends[:0]
		for _, d := range sends {
			if d.s.cohort != 0 && count[d.s.cohort] >= maxCohort {
				continue
			}
			count[d.s.cohort]++
			kept = append(kept, d)
		}
		sends = kept
		rng.Shuffle(len(sends), func(i, j int) { sends[i], sends[j] = sends[j], sends[i] })

		sortByCohort(sends, uint64(round))
		firstChunk[round] = sends[0].s.cohort
		chunkOf := map[uint64]int{}
		covered := 0
		for chunk, rest := 0, sends; len(rest) > 0; chunk++ {
			n := chunkLen(rest)
			if n < 1 || n > deliverChunk+maxCohort-1 {
				t.Fatalf("round %d: chunk of %d (deliverChunk %d, cohorts up to %d)", round, n, deliverChunk, maxCohort)
			}
			if n < deliverChunk && n < len(rest) {
				t.Fatalf("round %d: short chunk of %d with %d left", round, n, len(rest))
			}
			for _, d := range rest[:n] {
				c := d.s.cohort
				if c == 0 {
					continue
				}
				if prev, ok := chunkOf[c]; ok && prev != chunk {
					t.Fatalf("round %d: cohort %d split between chunks %d and %d", round, c, prev, chunk)
				}
				chunkOf[c] = chunk
			}
			covered += n
			rest = rest[n:]
		}
		if covered != len(sends) {
			t.Fatalf("round %d: chunks covered %d of %d sends", round, covered, len(sends))
		}
	}
	// The order of the cohorts turns between flushes: not always the same one first.
	distinct := map[uint64]bool{}
	for _, c := range firstChunk {
		distinct[c] = true
	}
	if len(distinct) < 10 {
		t.Fatalf("over 50 flushes only %d distinct cohorts came first: %v", len(distinct), firstChunk)
	}
}
