package pubsub_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/internal/pubsub"
)

func TestMemoryFanOut(t *testing.T) {
	b := pubsub.NewMemory()
	defer b.Close()
	subs := []*inbox{newInbox(), newInbox(), newInbox()}
	for _, s := range subs {
		defer b.Subscribe("keys", s.fn)()
	}
	other := newInbox()
	defer b.Subscribe("usage", other.fn)()

	ctx := context.Background()
	for i := range 10 {
		if err := b.Publish(ctx, "keys", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range subs {
		s.waitN(t, 10, time.Second)
		for j, m := range s.all() {
			if m != strconv.Itoa(j) {
				t.Fatalf("subscriber %d: message %d = %q, want %d (in publish order)", i, j, m, j)
			}
		}
	}
	other.quiet(t, 0, 50*time.Millisecond)
}

func TestMemoryPublishCopiesPayload(t *testing.T) {
	b := pubsub.NewMemory()
	defer b.Close()
	in := newInbox()
	defer b.Subscribe("t", in.fn)()
	buf := []byte("first")
	if err := b.Publish(context.Background(), "t", buf); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXX") // the caller reuses its buffer at once
	in.waitN(t, 1, time.Second)
	if got := in.all()[0]; got != "first" {
		t.Fatalf("got %q, want %q", got, "first")
	}
}

func TestMemoryCancelStopsDelivery(t *testing.T) {
	b := pubsub.NewMemory()
	defer b.Close()
	ctx := context.Background()
	gone, stays := newInbox(), newInbox()
	cancel := b.Subscribe("t", gone.fn)
	defer b.Subscribe("t", stays.fn)()

	if err := b.Publish(ctx, "t", []byte("1")); err != nil {
		t.Fatal(err)
	}
	gone.waitN(t, 1, time.Second)
	cancel()
	cancel() // idempotent
	if err := b.Publish(ctx, "t", []byte("2")); err != nil {
		t.Fatal(err)
	}
	stays.waitN(t, 2, time.Second)
	gone.quiet(t, 1, 50*time.Millisecond)
}

func TestMemoryCancelFromCallback(t *testing.T) {
	b := pubsub.NewMemory()
	defer b.Close()
	done := make(chan struct{})
	var cancel func()
	ready := make(chan struct{})
	cancel = b.Subscribe("t", func([]byte) {
		<-ready
		cancel() // must not deadlock
		close(done)
	})
	close(ready)
	if err := b.Publish(context.Background(), "t", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("cancel from inside the callback did not return")
	}
}

func TestMemorySlowSubscriberDoesNotBlockPublish(t *testing.T) {
	const queue, n = 8, 100
	b := pubsub.NewMemory(pubsub.MemoryOptions{QueueSize: queue})
	defer b.Close()

	release := make(chan struct{})
	var releaseOnce sync.Once
	// Registered after Close's defer so that it runs first: Close waits for callbacks.
	defer releaseOnce.Do(func() { close(release) })
	slow := newInbox()
	defer b.Subscribe("t", func(p []byte) {
		<-release
		slow.fn(p)
	})()
	fast := newInbox()
	defer b.Subscribe("t", fast.fn)()

	ctx := context.Background()
	var worst time.Duration
	for i := range n {
		start := time.Now()
		if err := b.Publish(ctx, "t", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, time.Since(start))
	}
	// A blocked subscriber must cost the publisher nothing like a blocked callback:
	// generous for -race on a loaded machine, far below "waits for the subscriber".
	if worst > 50*time.Millisecond {
		t.Fatalf("slowest Publish took %v with a blocked subscriber", worst)
	}
	// The other subscriber is not held back: it gets through to the newest message
	// (the tight loop may overflow its small queue too; those drops are counted).
	deadline := time.Now().Add(time.Second)
	for {
		if got := fast.all(); len(got) > 0 && got[len(got)-1] == strconv.Itoa(n-1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fast subscriber stuck behind the slow one: got %q", fast.all())
		}
		time.Sleep(time.Millisecond)
	}
	fastDrops := uint64(n - len(fast.all()))

	// The slow goroutine holds at most one message in its callback and its queue
	// keeps the newest `queue`; everything else was dropped and counted.
	d := b.Dropped() - fastDrops
	if d < n-queue-1 || d > n-queue {
		t.Fatalf("slow subscriber's drops = %d, want %d or %d", d, n-queue-1, n-queue)
	}
	releaseOnce.Do(func() { close(release) })
	slow.waitN(t, n-int(d), time.Second)
	got := slow.all()
	if last := got[len(got)-1]; last != strconv.Itoa(n-1) {
		t.Fatalf("last delivered = %q, want the newest %d (drop-oldest)", last, n-1)
	}
	if first := got[len(got)-queue]; first != strconv.Itoa(n-queue) {
		t.Fatalf("oldest kept = %q, want %d: the queue keeps the newest messages", first, n-queue)
	}
	slow.quiet(t, n-int(d), 50*time.Millisecond)
}

func TestMemoryPanickingSubscriberIsContained(t *testing.T) {
	b := pubsub.NewMemory()
	defer b.Close()
	defer b.Subscribe("t", func(p []byte) { panic("boom " + string(p)) })()
	in := newInbox()
	defer b.Subscribe("t", in.fn)()
	for i := range 3 {
		if err := b.Publish(context.Background(), "t", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	in.waitN(t, 3, time.Second)
}

func TestMemoryClosed(t *testing.T) {
	b := pubsub.NewMemory()
	in := newInbox()
	b.Subscribe("t", in.fn)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := b.Publish(context.Background(), "t", []byte("x")); !errors.Is(err, pubsub.ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed", err)
	}
	b.Subscribe("t", in.fn)() // a no-op, not a panic or a leak
	in.quiet(t, 0, 20*time.Millisecond)
}

func TestMemoryCloseEndsGoroutines(t *testing.T) {
	baseline := runtime.NumGoroutine()
	b := pubsub.NewMemory()
	block := make(chan struct{})
	defer close(block)
	for i := range 20 {
		b.Subscribe(fmt.Sprint("t", i%3), func([]byte) {})
	}
	// A subscriber stuck in its callback keeps its goroutine until the callback returns;
	// Close waits for it, so release it shortly after Close starts.
	started := make(chan struct{}, 1)
	b.Subscribe("t0", func([]byte) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-block
	})
	for range 5 {
		_ = b.Publish(context.Background(), "t0", []byte("x"))
	}
	<-started
	closed := make(chan error)
	go func() { closed <- b.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a callback was still running")
	case <-time.After(50 * time.Millisecond):
	}
	block <- struct{}{}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	goroutinesSettle(t, baseline)
}
