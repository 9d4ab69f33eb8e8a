package pubsub_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gsvdev/agentregistry/internal/pubsub"
)

// newRedisClient returns a client whose connections carry a unique name, so that a test
// can find (and kill) exactly its connections.
func newRedisClient(t *testing.T) (*redis.Client, string) {
	t.Helper()
	opt, err := redis.ParseURL(serviceURL(t, "TEST_REDIS_URL"))
	if err != nil {
		t.Fatal(err)
	}
	opt.ClientName = fmt.Sprintf("pubsubtest-%d-%d", time.Now().UnixNano(), appSeq.Add(1))
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c, opt.ClientName
}

func newRedisBus(t *testing.T, opts pubsub.RedisOptions) (*pubsub.Redis, *redis.Client, string) {
	t.Helper()
	c, name := newRedisClient(t)
	b, err := pubsub.NewRedis(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, c, name
}

func TestRedisAcrossReplicas(t *testing.T) {
	a, _, _ := newRedisBus(t, pubsub.RedisOptions{})
	b, _, _ := newRedisBus(t, pubsub.RedisOptions{})
	topic := uniqueTopic(t)
	in := newInbox()
	defer b.Subscribe(topic, in.fn)()

	start := time.Now()
	if err := a.Publish(context.Background(), topic, []byte("\x00binary\xff")); err != nil {
		t.Fatal(err)
	}
	in.waitN(t, 1, time.Second)
	t.Logf("delivered across replicas in %v", time.Since(start))
	if got := in.all()[0]; got != "\x00binary\xff" {
		t.Fatalf("got %q", got)
	}
}

func TestRedisPublisherReceivesOwnMessageOnce(t *testing.T) {
	a, _, _ := newRedisBus(t, pubsub.RedisOptions{})
	topic := uniqueTopic(t)
	in := newInbox()
	defer a.Subscribe(topic, in.fn)()
	for i := range 3 {
		if err := a.Publish(context.Background(), topic, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	in.waitN(t, 3, time.Second)
	in.quiet(t, 3, 300*time.Millisecond)
	if got := strings.Join(in.all(), ","); got != "0,1,2" {
		t.Fatalf("publisher received %q, want 0,1,2 once each", got)
	}
}

func TestRedisUnsubscribeAfterLastCancel(t *testing.T) {
	a, c, _ := newRedisBus(t, pubsub.RedisOptions{})
	topic := uniqueTopic(t)
	ch := a.Channel(topic)
	numsub := func() int64 {
		m, err := c.PubSubNumSub(context.Background(), ch).Result()
		if err != nil {
			t.Fatal(err)
		}
		return m[ch]
	}
	cancel1 := a.Subscribe(topic, func([]byte) {})
	cancel2 := a.Subscribe(topic, func([]byte) {})
	if n := numsub(); n != 1 {
		t.Fatalf("subscribers of %s on the server = %d, want 1 (one SUBSCRIBE per bus)", ch, n)
	}
	cancel1()
	time.Sleep(50 * time.Millisecond)
	if n := numsub(); n != 1 {
		t.Fatalf("after one of two cancels: %d server subscribers, want 1", n)
	}
	cancel2()
	deadline := time.Now().Add(2 * time.Second)
	for numsub() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still subscribed to %s after the last cancel", ch)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killClients closes, server side, every connection named name.
func killClients(t *testing.T, admin *redis.Client, name string) int {
	t.Helper()
	list, err := admin.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		if !strings.Contains(" "+line+" ", " name="+name+" ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if id, ok := strings.CutPrefix(f, "id="); ok {
				n, err := admin.ClientKillByFilter(context.Background(), "ID", id).Result()
				if err != nil {
					t.Fatal(err)
				}
				killed += int(n)
			}
		}
	}
	return killed
}

func TestRedisReconnect(t *testing.T) {
	a, _, name := newRedisBus(t, pubsub.RedisOptions{})
	b, admin, _ := newRedisBus(t, pubsub.RedisOptions{})
	topic := uniqueTopic(t)
	in := newInbox()
	defer a.Subscribe(topic, in.fn)()
	reconnected := make(chan struct{}, 10)
	defer a.OnReconnect(func() { reconnected <- struct{}{} })()

	if n := killClients(t, admin, name); n == 0 {
		t.Fatal("found no connection of bus A to kill")
	}
	select {
	case <-reconnected:
	case <-time.After(5 * time.Second):
		t.Fatal("OnReconnect did not fire after the subscription connection was killed")
	}
	// go-redis resubscribed on the new connection.
	deadline := time.Now().Add(2 * time.Second)
	for len(in.all()) == 0 {
		if err := b.Publish(context.Background(), topic, []byte("after")); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("no message delivered after the reconnect")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRedisCloseEndsGoroutines(t *testing.T) {
	c, _ := newRedisClient(t)
	if err := c.Ping(context.Background()).Err(); err != nil { // pool goroutines, if any, before the baseline
		t.Fatal(err)
	}
	baseline := runtime.NumGoroutine()
	b, err := pubsub.NewRedis(c, pubsub.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	topic := uniqueTopic(t)
	in := newInbox()
	for i := range 5 {
		b.Subscribe(fmt.Sprintf("%s.%d", topic, i%2), func([]byte) {})
	}
	b.Subscribe(topic, in.fn)
	if err := b.Publish(context.Background(), topic, []byte("x")); err != nil {
		t.Fatal(err)
	}
	in.waitN(t, 1, time.Second)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	goroutinesSettle(t, baseline)
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("Close closed the caller's client: %v", err)
	}
}

func TestRedisSilentlyDeadConnectionIsReplaced(t *testing.T) {
	opt, err := redis.ParseURL(serviceURL(t, "TEST_REDIS_URL"))
	if err != nil {
		t.Fatal(err)
	}
	px := startProxy(t, opt.Addr)
	opt.Addr = px.addr()
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	a, err := pubsub.NewRedis(c, pubsub.RedisOptions{HealthCheck: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	b, _, _ := newRedisBus(t, pubsub.RedisOptions{})
	topic := uniqueTopic(t)
	in := newInbox()
	defer a.Subscribe(topic, in.fn)()
	reconnected := make(chan struct{}, 10)
	defer a.OnReconnect(func() { reconnected <- struct{}{} })()

	px.freeze()
	select {
	case <-reconnected:
	case <-time.After(5 * time.Second):
		t.Fatal("a silently dead subscription connection was not replaced")
	}
	if err := b.Publish(context.Background(), topic, []byte("after")); err != nil {
		t.Fatal(err)
	}
	in.waitN(t, 1, time.Second)
}
