package live

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/usage"
)

// wireVersion lets a replica running a newer format be ignored (with a warning) by an
// older one during a rolling deploy instead of being misread.
const wireVersion = 1

// message is one bus payload: a slice of events, or a resync request from a replica
// that lost events before it could publish them.
type message struct {
	V      int         `json:"v"`
	Events []wireEvent `json:"e,omitempty"`
	Resync bool        `json:"resync,omitempty"`
}

// wireEvent is an Event with one-letter keys and without what the stats do not use, so
// that about 25 events fit in one NOTIFY payload.
type wireEvent struct {
	RequestID string   `json:"r"`
	Tenant    pulid.ID `json:"t"`
	Provider  pulid.ID `json:"p"`
	Config    pulid.ID `json:"c"`
	Agent     pulid.ID `json:"a"`
	Key       pulid.ID `json:"k,omitempty"`
	Status    int      `json:"s"`
	In        int64    `json:"i,omitempty"`
	Out       int64    `json:"o,omitempty"`
	Ms        int64    `json:"m,omitempty"`
	At        int64    `json:"at"` // Unix microseconds: the database's precision
	Error     string   `json:"e,omitempty"`
	// XID is Event.CommitXID; absent (0) from SQLite and from older replicas, whose
	// events are then matched by request id alone.
	XID uint64 `json:"x,omitempty"`
}

func toWire(ev *usage.Event) wireEvent {
	return wireEvent{
		RequestID: ev.RequestID, Tenant: ev.TenantID, Provider: ev.ProviderTenantID,
		Config: ev.ConfigID, Agent: ev.AgentID, Key: ev.APIKeyID, Status: ev.Status,
		In: ev.InputTokens, Out: ev.OutputTokens, Ms: ev.ElapsedMS,
		At: ev.StartedAt.UnixMicro(), Error: ev.ErrorCode, XID: ev.CommitXID,
	}
}

func (w *wireEvent) event() usage.Event {
	return usage.Event{
		RequestID: w.RequestID, TenantID: w.Tenant, ProviderTenantID: w.Provider,
		ConfigID: w.Config, AgentID: w.Agent, APIKeyID: w.Key, Status: w.Status,
		InputTokens: w.In, OutputTokens: w.Out, ElapsedMS: w.Ms,
		StartedAt: time.UnixMicro(w.At).UTC(), ErrorCode: w.Error, CommitXID: w.XID,
	}
}

var (
	payloadHead = []byte(`{"v":1,"e":[`)
	payloadTail = []byte(`]}`)
	// resyncPayload asks every replica to reload its stats from the database.
	resyncPayload = []byte(`{"v":1,"resync":true}`)
)

// errEventTooLarge reports an event that cannot fit in a payload on its own (ids far
// longer than any the service issues).
var errEventTooLarge = errors.New("live: usage event too large for one bus message")

// payload is one encoded bus message and the number of events it carries.
type payload struct {
	data   []byte
	events int
}

// encodeEvents packs events into as few payloads as fit under limit bytes each. Events
// too large on their own are left out and counted in skipped.
func encodeEvents(events []usage.Event, limit int) (payloads []payload, skipped int) {
	buf := append([]byte(nil), payloadHead...)
	n := 0
	for i := range events {
		b, err := json.Marshal(toWire(&events[i]))
		if err != nil || len(payloadHead)+len(b)+len(payloadTail) > limit {
			skipped++
			continue
		}
		if n > 0 && len(buf)+1+len(b)+len(payloadTail) > limit {
			payloads = append(payloads, payload{append(buf, payloadTail...), n})
			buf, n = append([]byte(nil), payloadHead...), 0
		}
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, b...)
		n++
	}
	if n > 0 {
		payloads = append(payloads, payload{append(buf, payloadTail...), n})
	}
	return payloads, skipped
}

func decodeMessage(payload []byte) (message, error) {
	var m message
	if err := json.Unmarshal(payload, &m); err != nil {
		return message{}, err
	}
	if m.V != wireVersion {
		return message{}, fmt.Errorf("unknown version %d", m.V)
	}
	return m, nil
}

// publisher sends published events to the bus from one goroutine, so that Publish
// (called by the recorder's writer with a batch's callers waiting) never waits for the
// network.
type publisher struct {
	h    *Hub
	wake chan struct{} // capacity 1
	stop chan struct{} // closed by close: flush and exit

	droppedEvents atomic.Uint64

	mu     sync.Mutex
	queue  []usage.Event
	closed bool
	// lost is set when events were dropped; a resync request goes out once the bus
	// accepts messages again, so that no replica keeps totals with a silent gap.
	lost bool
}

func (p *publisher) init(h *Hub) {
	p.h = h
	p.wake = make(chan struct{}, 1)
	p.stop = make(chan struct{})
}

func (p *publisher) enqueue(events []usage.Event) {
	if len(events) == 0 {
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	if len(p.queue)+len(events) > p.h.opts.MaxPublishQueue {
		first := !p.lost
		p.lost = true
		p.mu.Unlock()
		p.droppedEvents.Add(uint64(len(events)))
		if first {
			p.h.log.Warn("live: usage events published faster than the bus takes them; dropping (replicas will resync)",
				slog.Int("queue", p.h.opts.MaxPublishQueue))
		}
		return
	}
	if p.queue == nil {
		// The recorder gives us its slice: the first batch is kept as is, saving a copy.
		p.queue = events
	} else {
		p.queue = append(p.queue, events...)
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *publisher) take() ([]usage.Event, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queue
	p.queue = nil
	return q, p.lost
}

// close stops accepting events and waits for the queue to be sent (bounded by
// publishTimeout per message and the bus's own Close).
func (p *publisher) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	close(p.stop)
}

func (p *publisher) run() {
	defer p.h.wg.Done()
	// retry brings the resync request out after a failure even if no event follows.
	var retry <-chan time.Time
	var last time.Time // of the last send
	pause := time.NewTimer(time.Hour)
	pause.Stop()
	for {
		select {
		case <-p.wake:
		case <-retry:
		case <-p.stop:
			p.flushOnClose()
			return
		}
		// Wait out the rest of PublishInterval since the last send, so that the
		// batches committed meanwhile go out together.
		if wait := p.h.opts.PublishInterval - time.Since(last); wait > 0 {
			pause.Reset(wait)
			select {
			case <-pause.C:
			case <-p.stop:
				pause.Stop()
				p.flushOnClose()
				return
			}
			// What arrived during the pause goes out now; its wake-up must not start
			// another pause with nothing to send.
			select {
			case <-p.wake:
			default:
			}
		}
		retry = nil
		last = time.Now()
		if !p.send(p.h.ctx) {
			retry = time.After(time.Second)
		}
	}
}

// flushOnClose sends what is queued, bounded so that Close does not hang on a dead bus.
func (p *publisher) flushOnClose() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p.send(ctx)
}

// send publishes what is queued, then a resync request if events were lost. It reports
// false when a resync request is still owed.
func (p *publisher) send(ctx context.Context) bool {
	events, lost := p.take()
	payloads, skipped := encodeEvents(events, maxPayload)
	if skipped > 0 {
		p.h.log.Warn("live: usage events too large for the bus; dropped", slog.Int("events", skipped), slog.Any("error", errEventTooLarge))
		p.markLost(skipped)
		lost = true
	}
	for i, pl := range payloads {
		if err := p.publish(ctx, pl.data); err != nil {
			if ctx.Err() == nil {
				p.h.log.Warn("live: publishing usage events failed; replicas will resync", slog.Any("error", err))
			}
			// The rest would most likely fail the same way: count them all as lost.
			n := 0
			for _, rest := range payloads[i:] {
				n += rest.events
			}
			p.markLost(n)
			return false
		}
	}
	if !lost {
		return true
	}
	if err := p.publish(ctx, resyncPayload); err != nil {
		return false
	}
	p.mu.Lock()
	p.lost = false
	p.mu.Unlock()
	return true
}

func (p *publisher) publish(parent context.Context, payload []byte) error {
	ctx, cancel := context.WithTimeout(parent, publishTimeout)
	defer cancel()
	return p.h.bus.Publish(ctx, p.h.opts.Topic, payload)
}

func (p *publisher) markLost(n int) {
	p.droppedEvents.Add(uint64(n))
	p.mu.Lock()
	p.lost = true
	p.mu.Unlock()
}
