package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions tune a Redis bus. Zero values take the defaults.
type RedisOptions struct {
	// Prefix starts every Redis channel name, so that deployments sharing a Redis do not
	// hear each other. Default "agentregistry:".
	Prefix string
	// Logger receives connection events, drops and panicking callbacks. Default: discarded.
	Logger *slog.Logger
	// QueueSize bounds each subscription's queue. Default DefaultQueueSize.
	QueueSize int
	// SubscribeTimeout bounds how long Subscribe waits for Redis to confirm. Default 5s.
	SubscribeTimeout time.Duration
	// HealthCheck is how long the subscription connection may stay silent before it is
	// pinged; a ping unanswered for as long again means the connection is dead and is
	// replaced. Default 5s.
	HealthCheck time.Duration
}

// Redis is a Bus over Redis PUBLISH/SUBSCRIBE, with one go-redis PubSub connection per
// bus. As with Postgres, local subscribers are fed only from the subscription
// connection (Redis delivers a message to its publisher's subscriptions too), so each
// message reaches each subscriber once.
type Redis struct {
	client  redis.UniversalClient
	prefix  string
	log     *slog.Logger
	ps      *redis.PubSub
	f       *fanout
	ls      *listenSet
	subWait time.Duration
	health  time.Duration

	ctx    context.Context // ends on Close; bounds every call to Redis
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	ackMu sync.Mutex
	acks  map[string][]chan struct{} // SUBSCRIBE confirmations awaited by apply
}

var _ Bus = (*Redis)(nil)

// Reconnect backoff of the receive loop when Redis is unreachable.
const (
	redisMinBackoff = 100 * time.Millisecond
	redisMaxBackoff = 2 * time.Second
)

// NewRedis starts a bus on client. The client stays the caller's: Close does not close it.
func NewRedis(client redis.UniversalClient, opts RedisOptions) (*Redis, error) {
	if client == nil {
		return nil, errors.New("pubsub: nil redis client")
	}
	r := &Redis{
		client:  client,
		prefix:  opts.Prefix,
		log:     orDiscard(opts.Logger),
		subWait: opts.SubscribeTimeout,
		health:  opts.HealthCheck,
		acks:    make(map[string][]chan struct{}),
	}
	if r.prefix == "" {
		r.prefix = "agentregistry:"
	}
	if r.subWait <= 0 {
		r.subWait = defaultSubscribeTimeout
	}
	if r.health <= 0 {
		r.health = 5 * time.Second
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	// No channels yet: go-redis connects lazily, on the receive loop's first read.
	r.ps = client.Subscribe(r.ctx)
	r.f = newFanout(opts.QueueSize, r.log)
	r.ls = newListenSet(r.f, r.log, r.apply)
	r.wg.Add(2)
	go func() { defer r.wg.Done(); r.ls.run() }()
	go r.receive()
	return r, nil
}

// Channel returns the Redis channel that carries topic.
func (r *Redis) Channel(topic string) string { return r.prefix + topic }

// Publish implements Bus.
func (r *Redis) Publish(ctx context.Context, topic string, payload []byte) error {
	if r.ctx.Err() != nil {
		return ErrClosed
	}
	if err := r.client.Publish(ctx, r.Channel(topic), payload).Err(); err != nil {
		return fmt.Errorf("pubsub: publish: %w", err)
	}
	return nil
}

// Subscribe implements Bus.
func (r *Redis) Subscribe(topic string, fn func(payload []byte)) (cancel func()) {
	ch := r.Channel(topic)
	s := r.f.add(ch, fn)
	if s == nil {
		return func() {}
	}
	if !r.ls.await(ch, r.subWait) && r.ctx.Err() == nil {
		r.log.Warn("pubsub: SUBSCRIBE not confirmed in time; subscription starts when Redis answers",
			slog.String("channel", ch), slog.Duration("waited", r.subWait))
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			r.f.remove(s)
			r.ls.changed()
		})
	}
}

// OnReconnect implements Bus.
func (r *Redis) OnReconnect(fn func()) (cancel func()) { return r.f.onReconnect(fn) }

// Dropped counts messages discarded because a subscriber's queue was full.
func (r *Redis) Dropped() uint64 { return r.f.dropped.Load() }

// apply (un)subscribes one channel. go-redis remembers the channel set and resubscribes
// it on every new connection, so apply only has to change the set and, for SUBSCRIBE,
// wait for Redis to confirm: until then a message published elsewhere could be missed.
func (r *Redis) apply(ch string, listen bool) error {
	ctx, cancel := context.WithTimeout(r.ctx, r.subWait)
	defer cancel()
	if !listen {
		return r.ps.Unsubscribe(ctx, ch)
	}
	ack := make(chan struct{})
	r.ackMu.Lock()
	r.acks[ch] = append(r.acks[ch], ack)
	r.ackMu.Unlock()
	err := r.ps.Subscribe(ctx, ch)
	if err == nil {
		select {
		case <-ack:
			return nil
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	r.ackMu.Lock()
	ws := r.acks[ch]
	for i, w := range ws {
		if w == ack {
			r.acks[ch] = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
	if len(r.acks[ch]) == 0 {
		delete(r.acks, ch)
	}
	r.ackMu.Unlock()
	return err
}

func (r *Redis) confirmed(ch string) {
	r.ackMu.Lock()
	for _, w := range r.acks[ch] {
		close(w)
	}
	delete(r.acks, ch)
	r.ackMu.Unlock()
}

// receive reads the subscription connection until Close. go-redis replaces a broken
// connection and resubscribes by itself, but says nothing about it; the loop notices the
// error, and runs the reconnect hooks on the first successful read after it.
func (r *Redis) receive() {
	defer r.wg.Done()
	broken := false
	pingPending := false
	backoff := redisMinBackoff
	for {
		msg, err := r.ps.ReceiveTimeout(r.ctx, r.health)
		if r.ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if !pingPending {
					pingPending = true
					if perr := r.ps.Ping(r.ctx); perr != nil {
						r.lost(&broken, perr)
					}
					continue
				}
				// The ping went unanswered: the connection is dead without having been
				// closed (a network partition). go-redis treats a read that times out
				// because of its context, rather than its timeout, as a broken
				// connection and replaces it; an expired context is the public way
				// to ask for that.
				expired, cancel := context.WithDeadline(r.ctx, time.Now())
				_, _ = r.ps.ReceiveTimeout(expired, 0)
				cancel()
				pingPending = false
				r.lost(&broken, errors.New("ping unanswered"))
				continue
			}
			r.lost(&broken, err)
			select {
			case <-time.After(backoff):
			case <-r.ctx.Done():
				return
			}
			backoff = min(2*backoff, redisMaxBackoff)
			continue
		}
		pingPending = false
		backoff = redisMinBackoff
		if broken {
			broken = false
			r.log.Info("pubsub: redis subscription reconnected")
			r.f.reconnected()
		}
		switch m := msg.(type) {
		case *redis.Message:
			r.f.deliver(m.Channel, []byte(m.Payload))
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				r.confirmed(m.Channel)
			}
		case *redis.Pong:
		}
	}
}

func (r *Redis) lost(broken *bool, err error) {
	if !*broken {
		r.log.Warn("pubsub: redis subscription connection lost", slog.Any("error", err))
	}
	*broken = true
}

// Close implements Bus. It does not close the client.
func (r *Redis) Close() error {
	var err error
	r.once.Do(func() {
		r.cancel()
		// Closing the PubSub ends a blocked read at once; the listenSet's pending
		// SUBSCRIBE waits on r.ctx.
		if cerr := r.ps.Close(); cerr != nil && !errors.Is(cerr, redis.ErrClosed) {
			err = cerr
		}
		r.ls.stop()
		r.wg.Wait()
		r.f.close()
	})
	return err
}
