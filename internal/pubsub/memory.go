package pubsub

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// MemoryOptions tune a Memory bus. Zero values take the defaults.
type MemoryOptions struct {
	// QueueSize bounds each subscription's queue. Default DefaultQueueSize.
	QueueSize int
	// Logger receives drops and panicking callbacks. Default: discarded.
	Logger *slog.Logger
}

// Memory is an in-process Bus, for a single replica and for tests.
type Memory struct {
	f      *fanout
	closed atomic.Bool
}

var _ Bus = (*Memory)(nil)

// NewMemory returns an in-process bus. At most one MemoryOptions is used; it is variadic
// so that the common case reads NewMemory().
func NewMemory(opts ...MemoryOptions) *Memory {
	var o MemoryOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	return &Memory{f: newFanout(o.QueueSize, orDiscard(o.Logger))}
}

// Publish queues payload for every subscriber of topic and returns without waiting for
// them.
func (m *Memory) Publish(ctx context.Context, topic string, payload []byte) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Copied because the caller may reuse its buffer once Publish returns.
	m.f.deliver(topic, append([]byte(nil), payload...))
	return nil
}

// Subscribe implements Bus.
func (m *Memory) Subscribe(topic string, fn func(payload []byte)) (cancel func()) {
	s := m.f.add(topic, fn)
	if s == nil {
		return func() {}
	}
	return func() { m.f.remove(s) }
}

// OnReconnect implements Bus; an in-process bus never loses its connection, so fn is
// never called.
func (m *Memory) OnReconnect(fn func()) (cancel func()) { return m.f.onReconnect(fn) }

// Dropped counts messages discarded because a subscriber's queue was full.
func (m *Memory) Dropped() uint64 { return m.f.dropped.Load() }

// Close implements Bus.
func (m *Memory) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	m.f.close()
	return nil
}
