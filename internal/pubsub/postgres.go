package pubsub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/lib/pq"
)

// PostgresOptions tune a Postgres bus. Zero values take the defaults.
type PostgresOptions struct {
	// Logger receives connection events, drops and panicking callbacks. Default: discarded.
	Logger *slog.Logger
	// ChannelPrefix starts every NOTIFY channel name, so that deployments sharing a
	// database do not hear each other. [a-z0-9_], at most 32 bytes. Default "ar_".
	ChannelPrefix string
	// DB publishes when set (and is not closed by Close); otherwise the bus opens its own
	// small pool from the connection string.
	DB *sql.DB
	// ApplicationName names the listener's session in pg_stat_activity, so that
	// operators (and tests) can find it. Default "agentregistry-pubsub".
	ApplicationName string
	// QueueSize bounds each subscription's queue. Default DefaultQueueSize.
	QueueSize int
	// SubscribeTimeout bounds how long Subscribe waits for LISTEN. Default 5s.
	SubscribeTimeout time.Duration
	// MinReconnect and MaxReconnect bound the listener's reconnect backoff. Defaults
	// 100ms and 2s: a LISTEN connection is cheap, and the API-key cache must not stay
	// deaf for long. MaxReconnect also bounds how long Close may wait for the
	// listener's goroutine during an outage.
	MinReconnect, MaxReconnect time.Duration
	// PingInterval is how often the listener's connection is checked, and PingTimeout
	// how long a check may go unanswered before the connection is closed and replaced.
	// A connection that died silently (a partition, a dropped NAT entry) would otherwise
	// keep the replica deaf to revocations until TCP keepalive gives up, minutes later.
	// Defaults 10s and 5s.
	PingInterval, PingTimeout time.Duration
}

// MaxNotifyPayload is the largest encoded payload Publish sends. PostgreSQL refuses
// NOTIFY payloads of 8000 bytes or more; the margin leaves room for the encoding tag.
const MaxNotifyPayload = 7900

// maxChannelPrefix keeps room in the 63-byte identifier for the topic and its hash.
const maxChannelPrefix = 32

// Postgres is a Bus over PostgreSQL LISTEN/NOTIFY. Publish runs pg_notify on a pool;
// one pq.Listener connection holds a LISTEN per subscribed topic.
//
// Local subscribers are fed only from the listener, never directly by Publish: NOTIFY
// reaches the publishing session's own listener too, so this is what delivers each
// message exactly once on every replica, the publisher included, and in the same order
// everywhere.
type Postgres struct {
	db       *sql.DB
	ownDB    bool
	prefix   string
	log      *slog.Logger
	listener *pq.Listener
	f        *fanout
	ls       *listenSet
	dialer   *trackingDialer
	subWait  time.Duration
	ping     time.Duration
	pingWait time.Duration

	reconnect chan struct{} // capacity 1; set by pq's event callback
	// connectFailed is touched only by pq's event callback, which pq calls from its
	// single connection goroutine.
	connectFailed bool
	done          chan struct{}
	wg            sync.WaitGroup
	closeOnce     sync.Once
}

var _ Bus = (*Postgres)(nil)

// NewPostgres starts a bus on the database at connString (a lib/pq URL or key=value
// string). It does not wait for the database: the listener connects, and reconnects, in
// the background.
func NewPostgres(connString string, opts PostgresOptions) (*Postgres, error) {
	prefix := opts.ChannelPrefix
	if prefix == "" {
		prefix = "ar_"
	}
	if len(prefix) > maxChannelPrefix || strings.IndexFunc(prefix, func(r rune) bool { return !validChannelRune(r) }) >= 0 {
		return nil, fmt.Errorf("pubsub: channel prefix %q: want at most %d of [a-z0-9_]", prefix, maxChannelPrefix)
	}
	appName := opts.ApplicationName
	if appName == "" {
		appName = "agentregistry-pubsub"
	}
	dsn, err := withApplicationName(connString, appName)
	if err != nil {
		return nil, err
	}
	minR, maxR := opts.MinReconnect, opts.MaxReconnect
	if minR <= 0 {
		minR = 100 * time.Millisecond
	}
	if maxR < minR {
		maxR = max(minR, 2*time.Second)
	}
	p := &Postgres{
		db:        opts.DB,
		prefix:    prefix,
		log:       orDiscard(opts.Logger),
		subWait:   opts.SubscribeTimeout,
		ping:      opts.PingInterval,
		pingWait:  opts.PingTimeout,
		dialer:    &trackingDialer{},
		reconnect: make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	if p.subWait <= 0 {
		p.subWait = defaultSubscribeTimeout
	}
	if p.ping <= 0 {
		p.ping = 10 * time.Second
	}
	if p.pingWait <= 0 {
		p.pingWait = 5 * time.Second
	}
	if p.db == nil {
		db, err := sql.Open("postgres", connString)
		if err != nil {
			return nil, fmt.Errorf("pubsub: open: %w", err)
		}
		// Publishes are single short statements; a few connections carry many per second.
		db.SetMaxOpenConns(4)
		db.SetMaxIdleConns(4)
		p.db, p.ownDB = db, true
	}
	p.f = newFanout(opts.QueueSize, p.log)
	p.listener = pq.NewDialListener(p.dialer, dsn, minR, maxR, p.event)
	p.ls = newListenSet(p.f, p.log, p.apply)
	p.wg.Add(3)
	go func() { defer p.wg.Done(); p.ls.run() }()
	go p.receive()
	go p.pingLoop()
	return p, nil
}

// Channel returns the NOTIFY channel that carries topic: the prefix and the topic,
// lowercased with other characters replaced by '_'. When that changed the topic or is
// too long, a hash of the topic is appended, so that distinct topics keep distinct
// channels ("usage.stats" and "usage_stats" must not hear each other).
func (p *Postgres) Channel(topic string) string { return channelName(p.prefix, topic) }

func validChannelRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_'
}

// maxIdentifier is PostgreSQL's NAMEDATALEN-1: longer channel names are truncated by the
// server, which would silently merge channels.
const maxIdentifier = 63

func channelName(prefix, topic string) string {
	var b strings.Builder
	b.WriteString(prefix)
	changed := topic == ""
	for _, r := range topic {
		lr := r
		if r >= 'A' && r <= 'Z' {
			lr = r + ('a' - 'A')
		}
		if !validChannelRune(lr) {
			lr = '_'
		}
		if lr != r {
			changed = true
		}
		b.WriteRune(lr)
	}
	name := b.String()
	if !changed && len(name) <= maxIdentifier {
		return name
	}
	sum := sha256.Sum256([]byte(topic))
	h := hex.EncodeToString(sum[:5])
	if keep := maxIdentifier - len(h) - 1; len(name) > keep {
		name = name[:keep]
	}
	return name + "_" + h
}

func withApplicationName(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("pubsub: connection string: %w", err)
		}
		q := u.Query()
		q.Set("application_name", name)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	// key=value form: a later key overrides an earlier one.
	esc := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(name)
	return strings.TrimSpace(dsn) + " application_name='" + esc + "'", nil
}

// Payloads travel as text (NOTIFY payloads are text in the database encoding). A tag
// byte says how: 't' verbatim UTF-8, 'b' base64 for anything else (binary, NUL bytes).
func encodeNotify(payload []byte) string {
	if utf8.Valid(payload) && bytes.IndexByte(payload, 0) < 0 {
		return "t" + string(payload)
	}
	return "b" + base64.StdEncoding.EncodeToString(payload)
}

func decodeNotify(s string) ([]byte, error) {
	switch {
	case strings.HasPrefix(s, "t"):
		return []byte(s[1:]), nil
	case strings.HasPrefix(s, "b"):
		return base64.StdEncoding.DecodeString(s[1:])
	}
	return nil, errors.New("unknown payload encoding")
}

// Publish sends payload with pg_notify. Payloads whose encoding exceeds
// MaxNotifyPayload bytes (about 7900 bytes of UTF-8 text, about 5900 of binary) fail with
// ErrPayloadTooLarge: send an id and let subscribers read the rest.
func (p *Postgres) Publish(ctx context.Context, topic string, payload []byte) error {
	select {
	case <-p.done:
		return ErrClosed
	default:
	}
	enc := encodeNotify(payload)
	if len(enc) > MaxNotifyPayload {
		return fmt.Errorf("%w: %d bytes encoded, limit %d", ErrPayloadTooLarge, len(enc), MaxNotifyPayload)
	}
	if _, err := p.db.ExecContext(ctx, "SELECT pg_notify($1, $2)", p.Channel(topic), enc); err != nil {
		return fmt.Errorf("pubsub: notify: %w", err)
	}
	return nil
}

// Subscribe implements Bus. The first subscriber of a topic LISTENs; the last cancel
// UNLISTENs (in the background).
func (p *Postgres) Subscribe(topic string, fn func(payload []byte)) (cancel func()) {
	ch := p.Channel(topic)
	s := p.f.add(ch, fn)
	if s == nil {
		return func() {}
	}
	if !p.ls.await(ch, p.subWait) {
		select {
		case <-p.done:
		default:
			p.log.Warn("pubsub: LISTEN not confirmed in time; subscription starts when the database answers",
				slog.String("channel", ch), slog.Duration("waited", p.subWait))
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			p.f.remove(s)
			p.ls.changed()
		})
	}
}

// OnReconnect implements Bus.
func (p *Postgres) OnReconnect(fn func()) (cancel func()) { return p.f.onReconnect(fn) }

// Dropped counts messages discarded because a subscriber's queue was full.
func (p *Postgres) Dropped() uint64 { return p.f.dropped.Load() }

func (p *Postgres) apply(ch string, listen bool) error {
	if listen {
		if err := p.listener.Listen(ch); err != nil && !errors.Is(err, pq.ErrChannelAlreadyOpen) {
			return err
		}
		return nil
	}
	if err := p.listener.Unlisten(ch); err != nil && !errors.Is(err, pq.ErrChannelNotOpen) {
		return err
	}
	return nil
}

// event is pq's connection-state callback. It runs on pq's goroutine, which also feeds
// notifications, so it only logs and signals.
func (p *Postgres) event(ev pq.ListenerEventType, err error) {
	switch ev {
	case pq.ListenerEventConnected:
		// A first connection that follows failed attempts counts as a reconnect:
		// subscribers may already hold state (read from the database meanwhile) whose
		// invalidations they could not hear.
		if p.connectFailed {
			p.connectFailed = false
			p.log.Info("pubsub: listener connected")
			p.signalReconnect()
		}
	case pq.ListenerEventReconnected:
		p.connectFailed = false
		p.log.Info("pubsub: listener reconnected")
		p.signalReconnect()
	case pq.ListenerEventDisconnected:
		if !p.closing() {
			p.log.Warn("pubsub: listener disconnected", slog.Any("error", err))
		}
	case pq.ListenerEventConnectionAttemptFailed:
		p.connectFailed = true
		if !p.closing() {
			p.log.Warn("pubsub: listener connection attempt failed", slog.Any("error", err))
		}
	}
}

func (p *Postgres) closing() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *Postgres) signalReconnect() {
	if p.closing() {
		return
	}
	select {
	case p.reconnect <- struct{}{}:
	default:
	}
}

// receive drains pq's notification channel until pq closes it (after Close), so that
// pq's goroutine never blocks on a full channel and can exit.
func (p *Postgres) receive() {
	defer p.wg.Done()
	notify := p.listener.NotificationChannel()
	for {
		select {
		case n, ok := <-notify:
			if !ok {
				return
			}
			if n == nil {
				// pq sends nil after a reconnect; the event callback already signalled.
				continue
			}
			p.drainReconnect()
			payload, err := decodeNotify(n.Extra)
			if err != nil {
				p.log.Warn("pubsub: dropping notification", slog.String("channel", n.Channel), slog.Any("error", err))
				continue
			}
			p.f.deliver(n.Channel, payload)
		case <-p.reconnect:
			p.f.reconnected()
		}
	}
}

// drainReconnect runs pending reconnect hooks before the next message, so that a
// subscriber resyncs before it sees messages from the new connection.
func (p *Postgres) drainReconnect() {
	select {
	case <-p.reconnect:
		p.f.reconnected()
	default:
	}
}

// pingLoop checks the listener connection: pq only notices a dead connection when a
// read or write fails, and a silently dead one fails neither.
func (p *Postgres) pingLoop() {
	defer p.wg.Done()
	t := time.NewTicker(p.ping)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-p.done:
			return
		}
		res := make(chan error, 1)
		// Ping blocks until the server answers or the connection fails; the goroutine
		// ends by one or the other (Close drops the connection first).
		go func() { res <- p.listener.Ping() }()
		timeout := time.NewTimer(p.pingWait)
		select {
		case err := <-res:
			if err != nil && !errors.Is(err, net.ErrClosed) {
				p.log.Debug("pubsub: listener ping failed", slog.Any("error", err))
			}
		case <-timeout.C:
			p.log.Warn("pubsub: listener ping unanswered; replacing the connection", slog.Duration("waited", p.pingWait))
			p.dialer.drop()
			<-res
		case <-p.done:
			<-res
		}
		timeout.Stop()
	}
}

// trackingDialer remembers the listener's connection so that pingLoop can close it: pq
// has no way to abandon a connection that still looks open, and closing the socket
// makes its reader fail, after which pq reconnects and re-LISTENs as usual.
type trackingDialer struct {
	d   net.Dialer
	mu  sync.Mutex
	cur net.Conn
}

func (t *trackingDialer) Dial(network, address string) (net.Conn, error) {
	return t.DialContext(context.Background(), network, address)
}

func (t *trackingDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return t.DialContext(ctx, network, address)
}

func (t *trackingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := t.d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.cur = c // the listener holds one connection at a time; an older one is gone
	t.mu.Unlock()
	return c, nil
}

func (t *trackingDialer) drop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur != nil {
		_ = t.cur.Close()
		t.cur = nil
	}
}

// Close implements Bus. It closes the listener first, which unblocks a LISTEN waiting
// for the connection, then waits for every goroutine.
func (p *Postgres) Close() error {
	var err error
	p.closeOnce.Do(func() {
		close(p.done)
		// Drop the connection first: pq's Close waits for a Ping in flight, which on a
		// silently dead connection would never be answered.
		p.dialer.drop()
		if cerr := p.listener.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = cerr
		}
		p.ls.stop()
		p.wg.Wait()
		p.f.close()
		if p.ownDB {
			err = errors.Join(err, p.db.Close())
		}
	})
	return err
}
