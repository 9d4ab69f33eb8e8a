package live

import (
	"slices"
	"time"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/usage"
)

// The filter dimensions, most selective first: a group is indexed under its most
// selective non-empty dimension, so that the groups an event's lookup finds are nearly
// all groups that match it.
const (
	dimKey = iota
	dimConfig
	dimAgent
	dimTenant
	dimProvider
	numDims
)

type ids [numDims]pulid.ID

// groupKey identifies a group: a normalized Filter (comparable, so a map key).
type groupKey struct {
	ids ids
	// custom is set when the filter gives its period's first day, period (Unix time);
	// otherwise the period is the calendar month.
	custom bool
	period int64
}

func (f Filter) key() groupKey {
	k := groupKey{ids: ids{f.KeyID, f.ConfigID, f.AgentID, f.TenantID, f.ProviderTenantID}}
	if !f.PeriodStart.IsZero() {
		k.custom, k.period = true, dayOf(f.PeriodStart).Unix()
	}
	return k
}

func idsOf(ev *usage.Event) ids {
	return ids{ev.APIKeyID, ev.ConfigID, ev.AgentID, ev.TenantID, ev.ProviderTenantID}
}

// matches reports whether an event with the given ids belongs to the group.
func (k *groupKey) matches(ev *ids) bool {
	for d, want := range k.ids {
		if want != "" && want != ev[d] {
			return false
		}
	}
	return true
}

// primary is the dimension k is indexed under, or -1 for the match-all filter.
func (k *groupKey) primary() int {
	for d, v := range k.ids {
		if v != "" {
			return d
		}
	}
	return -1
}

// index finds the groups an event matches with one map lookup per dimension, so that
// ingesting an event costs O(dimensions + matching groups), not O(groups).
type index struct {
	byDim [numDims]map[pulid.ID]map[*group]struct{}
	all   map[*group]struct{} // match-all groups
}

func newIndex() index {
	var x index
	for d := range x.byDim {
		x.byDim[d] = make(map[pulid.ID]map[*group]struct{})
	}
	x.all = make(map[*group]struct{})
	return x
}

func (x *index) add(g *group) {
	d := g.key.primary()
	if d < 0 {
		x.all[g] = struct{}{}
		return
	}
	v := g.key.ids[d]
	m := x.byDim[d][v]
	if m == nil {
		m = make(map[*group]struct{})
		x.byDim[d][v] = m
	}
	m[g] = struct{}{}
}

func (x *index) remove(g *group) {
	d := g.key.primary()
	if d < 0 {
		delete(x.all, g)
		return
	}
	v := g.key.ids[d]
	if m := x.byDim[d][v]; m != nil {
		delete(m, g)
		if len(m) == 0 {
			delete(x.byDim[d], v)
		}
	}
}

// match appends the groups matching an event with ids ev to out. Each group is indexed
// once, so it is found at most once.
func (x *index) match(ev ids, out []*group) []*group {
	for g := range x.all {
		out = append(out, g)
	}
	for d, v := range ev {
		if v == "" {
			continue
		}
		for g := range x.byDim[d][v] {
			if g.key.matches(&ev) {
				out = append(out, g)
			}
		}
	}
	return out
}

// group is the shared state of every subscriber of one filter. Guarded by Hub.mu.
type group struct {
	key  groupKey
	subs map[*subscriber]struct{}
	// refs counts subscribers plus Subscribe calls waiting for the first load; the group
	// is freed when it drops to zero.
	refs  int
	ready chan struct{} // closed when the first load ended
	err   error         // the first load's error

	loaded     bool
	loading    bool          // a load is in flight: events wait in pending
	pending    []usage.Event // events that arrived during the load
	needReload bool
	freed      bool
	// pendingOverflow: more than maxPending events arrived during the load, so
	// pending is incomplete and the group must be loaded again.
	pendingOverflow bool

	// counted is what the last load counted: those calls' events may still be on the
	// bus, and must not be counted twice. Its ids are dropped at seenUntil.
	counted   counted
	seenUntil time.Time

	st         state
	dirty      bool  // changed since the last flush
	resynced   bool  // the next message follows a reload
	sentMinute int64 // LastMinute.Requests of the last message, to notice the minute sliding
	phase      int   // the slice of the flush interval in which the group is flushed
}

func newGroup(k groupKey, phase int) *group {
	return &group{key: k, subs: make(map[*subscriber]struct{}), ready: make(chan struct{}), loading: true, phase: phase}
}

// ingest takes one event off the bus.
func (g *group) ingest(ev *usage.Event, today, now time.Time, recentCap int) {
	if g.loading {
		if len(g.pending) < maxPending {
			g.pending = append(g.pending, *ev)
		} else {
			g.pendingOverflow = true
		}
		return
	}
	if !g.loaded {
		return
	}
	g.apply(ev, today, now, recentCap)
}

// apply counts ev unless the last load already did.
func (g *group) apply(ev *usage.Event, today, now time.Time, recentCap int) {
	if g.counted.includes(ev) {
		return
	}
	g.st.roll(today)
	g.st.apply(ev, now, recentCap)
	g.dirty = true
}

// stats builds the group's message. scratch is reused between calls.
func (g *group) stats(now time.Time, scratch *[]int64) *Stats {
	m := g.st.minute(now, scratch)
	return &Stats{
		memo:        new(memo),
		Day:         g.st.dayT,
		DayStart:    g.st.day,
		Period:      g.st.periodT,
		PeriodStart: g.st.periodStart,
		LastMinute:  m,
		Recent:      slices.Clone(g.st.recent),
		AsOf:        now.UTC(),
	}
}

// state is a group's running numbers.
type state struct {
	day         time.Time // the UTC day dayT counts
	dayT        Totals
	periodStart time.Time
	periodEnd   time.Time // zero: open-ended (a given period start)
	monthly     bool      // the period is the calendar month and rolls over
	periodT     Totals

	// buckets count the calls started in each of the last 60 seconds, by Unix second
	// modulo 60, for LastMinute.Requests.
	buckets [60]bucket
	// samples are the latencies of the latest calls, a ring of at most
	// MaxMinuteSamples, for the percentiles.
	samples []sample
	next    int // the ring's oldest entry once it is full

	recent []Call // newest first, at most RecentCalls
}

type bucket struct {
	sec int64
	n   int64
}

type sample struct {
	at int64 // Unix milliseconds
	ms int64
}

// newState returns the empty state of key k at now.
func newState(k groupKey, now time.Time) state {
	st := state{day: dayOf(now)}
	if !k.custom {
		st.monthly = true
		st.periodStart = monthOf(now)
		st.periodEnd = st.periodStart.AddDate(0, 1, 0)
	} else {
		st.periodStart = time.Unix(k.period, 0).UTC()
	}
	return st
}

// roll moves the state to day today when that is later than its own, emptying the
// day (and for a monthly period, the period). It reports whether anything changed.
func (st *state) roll(today time.Time) bool {
	if !today.After(st.day) {
		return false
	}
	st.day = today
	st.dayT = Totals{}
	if st.monthly && !today.Before(st.periodEnd) {
		st.periodStart = monthOf(today)
		st.periodEnd = st.periodStart.AddDate(0, 1, 0)
		st.periodT = Totals{}
	}
	return true
}

func (t *Totals) add(ev *usage.Event) {
	t.Requests++
	if ev.Status >= 400 {
		t.Errors++
	}
	t.InputTokens += ev.InputTokens
	t.OutputTokens += ev.OutputTokens
}

func (st *state) apply(ev *usage.Event, now time.Time, recentCap int) {
	at := ev.StartedAt.UTC()
	// The same day and period rules as the rollups: by the start's UTC day.
	if dayOf(at).Equal(st.day) {
		st.dayT.add(ev)
	}
	if !at.Before(st.periodStart) && (st.periodEnd.IsZero() || at.Before(st.periodEnd)) {
		st.periodT.add(ev)
	}
	st.addMinute(at, ev.ElapsedMS, now, 1)
	st.addRecent(Call{
		RequestID: ev.RequestID, Status: ev.Status, InputTokens: ev.InputTokens,
		OutputTokens: ev.OutputTokens, ElapsedMS: ev.ElapsedMS, At: at, ErrorCode: ev.ErrorCode,
	}, recentCap)
}

// addMinute counts n calls started at at (the latest of which took ms) if that is within
// the last minute. A start in the future (another replica's clock) counts as now.
func (st *state) addMinute(at time.Time, ms int64, now time.Time, n int64) {
	if at.After(now) {
		at = now
	}
	if !at.After(now.Add(-time.Minute)) {
		return
	}
	sec := at.Unix()
	b := &st.buckets[mod60(sec)]
	if b.sec != sec {
		// Within the minute, distinct seconds have distinct slots: what the slot held is
		// older than a minute.
		*b = bucket{sec: sec}
	}
	b.n += n
	s := sample{at: at.UnixMilli(), ms: ms}
	if len(st.samples) < MaxMinuteSamples {
		st.samples = append(st.samples, s)
		return
	}
	st.samples[st.next] = s
	st.next = (st.next + 1) % MaxMinuteSamples
}

func mod60(sec int64) int { return int(((sec % 60) + 60) % 60) }

// minuteCount returns the calls started in the minute before now.
func (st *state) minuteCount(now time.Time) int64 {
	cut := now.Add(-time.Minute).Unix()
	var n int64
	for _, b := range st.buckets {
		if b.sec > cut && b.n > 0 {
			n += b.n
		}
	}
	return n
}

func (st *state) minute(now time.Time, scratch *[]int64) Minute {
	m := Minute{Requests: st.minuteCount(now)}
	cut := now.Add(-time.Minute).UnixMilli()
	ms := (*scratch)[:0]
	for _, s := range st.samples {
		if s.at > cut {
			ms = append(ms, s.ms)
		}
	}
	*scratch = ms
	if len(ms) == 0 {
		return m
	}
	slices.Sort(ms)
	m.P50Ms = percentile(ms, 0.50)
	m.P95Ms = percentile(ms, 0.95)
	return m
}

// percentile interpolates linearly between the closest ranks of sorted.
func percentile(sorted []int64, q float64) float64 {
	pos := q * float64(len(sorted)-1)
	lo := int(pos)
	if lo >= len(sorted)-1 {
		return float64(sorted[len(sorted)-1])
	}
	frac := pos - float64(lo)
	return float64(sorted[lo]) + frac*float64(sorted[lo+1]-sorted[lo])
}

// addRecent inserts c in start order (newest first), keeping at most max calls.
func (st *state) addRecent(c Call, max int) {
	i := 0
	for i < len(st.recent) && c.At.Before(st.recent[i].At) {
		i++
	}
	if i >= max {
		return
	}
	if len(st.recent) < max {
		st.recent = append(st.recent, Call{})
	}
	copy(st.recent[i+1:], st.recent[i:])
	st.recent[i] = c
}

// dayOf is t's UTC day at 00:00: the rollups' day.
func dayOf(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// monthOf is the first instant of t's UTC month: the default billing period.
func monthOf(t time.Time) time.Time {
	y, m, _ := t.UTC().Date()
	return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
}
