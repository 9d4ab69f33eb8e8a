package live

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"entgo.io/ent/dialect/sql"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/predicate"
	"github.com/gsvdev/agentregistry/internal/usage"
)

// counted is what a load already counted, so that the events of those calls, which may
// still be on the bus when the load is installed, are not counted again.
type counted struct {
	// snap is the PostgreSQL snapshot the load read in (nil on SQLite). It decides, for
	// good, for every event that carries its commit's transaction id: the records and the
	// rollups are written in one transaction, so the snapshot saw both or neither.
	snap *pgSnapshot
	// ids are the request ids the load read from usage_records (the last minute, the
	// recent calls): the test for events without a transaction id. Calls that ended
	// later than that, or beyond MaxMinuteSamples, are not among them, which is why
	// PostgreSQL events carry their transaction id. Dropped after seenTTL.
	ids map[string]struct{}
}

// includes reports whether the load already counted ev's call.
func (c *counted) includes(ev *usage.Event) bool {
	if ev.CommitXID != 0 && c.snap != nil {
		return c.snap.visible(ev.CommitXID)
	}
	if _, ok := c.ids[ev.RequestID]; ok {
		delete(c.ids, ev.RequestID) // delivered once: it will not come again
		return true
	}
	return false
}

// pgSnapshot is a PostgreSQL snapshot (pg_snapshot): which transactions' writes a reader
// sees.
type pgSnapshot struct {
	xmin, xmax uint64
	xip        map[uint64]struct{} // running when the snapshot was taken
}

// visible reports whether a committed transaction's writes are in the snapshot: those
// that ended before it (below xmin, or below xmax and not running then) are, those that
// started after it (from xmax) are not.
func (p *pgSnapshot) visible(xid uint64) bool {
	switch {
	case xid < p.xmin:
		return true
	case xid >= p.xmax:
		return false
	}
	_, running := p.xip[xid]
	return !running
}

// parsePGSnapshot reads pg_snapshot's text form, "xmin:xmax:xip,xip,...".
func parsePGSnapshot(s string) (*pgSnapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return nil, fmt.Errorf("live: snapshot %q: want xmin:xmax:xip", s)
	}
	xmin, err1 := strconv.ParseUint(parts[0], 10, 64)
	xmax, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil || xmin > xmax {
		return nil, fmt.Errorf("live: snapshot %q: bad bounds", s)
	}
	p := &pgSnapshot{xmin: xmin, xmax: xmax}
	if parts[2] != "" {
		xips := strings.Split(parts[2], ",")
		p.xip = make(map[uint64]struct{}, len(xips))
		for _, x := range xips {
			v, err := strconv.ParseUint(x, 10, 64)
			if err != nil || v < xmin || v >= xmax {
				return nil, fmt.Errorf("live: snapshot %q: bad running transaction %q", s, x)
			}
			p.xip[v] = struct{}{}
		}
	}
	return p, nil
}

// currentSnapshot returns the snapshot of the transaction client runs in. (ent has no raw
// query; an aggregate over an empty selection always yields its one row.)
func currentSnapshot(ctx context.Context, client *ent.Client) (*pgSnapshot, error) {
	var rows []struct {
		Snap  string `json:"snap"`
		Count int    `json:"n"`
	}
	err := client.UsageDaily.Query().
		Where(predicate.UsageDaily(func(s *sql.Selector) { s.Where(sql.False()) })).
		Modify(func(s *sql.Selector) {
			s.Select(sql.As("pg_current_snapshot()::text", "snap"), sql.As(sql.Count("*"), "n"))
		}).
		Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("live: load snapshot: %w", err)
	}
	if len(rows) != 1 {
		return nil, fmt.Errorf("live: load snapshot: %d rows", len(rows))
	}
	return parsePGSnapshot(rows[0].Snap)
}
