package live

import (
	"context"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/usage"
)

// benchWorld is 100 buyers of the agents of 10 providers (2 agents each); every buyer
// has 2 configs with one key each.
type benchWorld struct {
	providers []pulid.ID
	agents    []pulid.ID // agents[i] belongs to providers[i/2]
	buyers    []pulid.ID
	configs   []scope // 2 per buyer
}

func newBenchWorld() *benchWorld {
	w := &benchWorld{}
	for range 10 {
		w.providers = append(w.providers, pulid.MustNew("ten"))
	}
	for i := range 20 {
		_ = i
		w.agents = append(w.agents, pulid.MustNew("agt"))
	}
	for b := range 100 {
		w.buyers = append(w.buyers, pulid.MustNew("ten"))
		for c := range 2 {
			ag := (b*2 + c) % len(w.agents)
			w.configs = append(w.configs, scope{
				tenant: w.buyers[b], provider: w.providers[ag/2], config: pulid.MustNew("cfg"),
				agent: w.agents[ag], key: pulid.MustNew("key"),
			})
		}
	}
	return w
}

// filter returns subscriber i's filter: a mix of what buyers, providers and admins watch.
func (w *benchWorld) filter(i int) Filter {
	// i%10 picks the kind of filter and i/10 the config, so that each kind spreads over
	// every config, tenant and provider.
	c := w.configs[(i/10)%len(w.configs)]
	switch i % 10 {
	case 0, 1, 2, 3:
		return Filter{TenantID: c.tenant}
	case 4, 5:
		return Filter{TenantID: c.tenant, ConfigID: c.config}
	case 6:
		return Filter{TenantID: c.tenant, KeyID: c.key}
	case 7:
		return Filter{ProviderTenantID: c.provider}
	case 8:
		return Filter{ProviderTenantID: c.provider, AgentID: c.agent}
	default:
		if i%100 == 99 {
			return Filter{} // admin
		}
		return Filter{ConfigID: c.config}
	}
}

// BenchmarkFanout holds 10,000 subscriptions over 100 tenants with mixed filters and
// measures the cost of ingesting one event, of one flush, and the delay from Publish
// (the recorder's commit) to delivery at a steady event rate.
func BenchmarkFanout(b *testing.B) {
	subscribers := 10000
	if n, err := strconv.Atoi(os.Getenv("LIVE_BENCH_SUBSCRIBERS")); err == nil && n > 0 {
		subscribers = n
	}
	db := sqliteDB(b)
	bus := newMemory(b)
	h := newHub(b, db.Client, bus, Options{}) // default 500 ms interval
	w := newBenchWorld()

	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heap0 := ms.HeapAlloc
	g0 := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chans := make([]<-chan *Stats, subscribers)
	start := time.Now()
	var wg sync.WaitGroup
	for p := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < subscribers; i += 16 {
				ch, err := h.Subscribe(ctx, w.filter(i))
				if err != nil {
					b.Error(err)
					return
				}
				chans[i] = ch
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	subscribeTime := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.Logf("%d subscribers in %d groups, subscribed in %v; hub heap %.0f bytes/subscriber; hub goroutines %d",
		h.Subscribers(), h.Groups(), subscribeTime, float64(ms.HeapAlloc-heap0)/float64(subscribers), runtime.NumGoroutine()-g0)

	// Readers stand for the websocket writers: they take each message and note how long
	// after its Publish each newly visible call arrived.
	var (
		mu        sync.Mutex
		recording bool
		delays    []time.Duration
		messages  int
	)
	readers := sync.WaitGroup{}
	for _, ch := range chans {
		readers.Add(1)
		go func() {
			defer readers.Done()
			var newest time.Time
			var local []time.Duration
			n := 0
			for s := range ch {
				now := time.Now()
				n++
				for _, c := range s.Recent {
					if !c.At.After(newest) {
						break
					}
					local = append(local, now.Sub(c.At))
				}
				if len(s.Recent) > 0 {
					newest = s.Recent[0].At
				}
				mu.Lock()
				if recording {
					delays = append(delays, local...)
					messages += n
				}
				mu.Unlock()
				local, n = local[:0], 0
			}
		}()
	}
	defer func() {
		cancel()
		readers.Wait()
	}()

	// ingest: the bus callback's cost per event (decode + match + update every matching
	// group), with every subscription live and the ticker delivering meanwhile.
	for _, size := range []int{1, 25} {
		b.Run("ingest-batch"+itoa(size), func(b *testing.B) {
			payloads := make([][]byte, 64)
			for p := range payloads {
				evs := make([]usage.Event, size)
				for j := range evs {
					c := w.configs[(p*size+j)%len(w.configs)]
					evs[j] = c.event(200, 10, 20, int64(j), time.Now())
				}
				enc, _ := encodeEvents(evs, maxPayload)
				payloads[p] = enc[0].data
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ResetTimer()
			cpu0 := threadCPU()
			for i := 0; i < b.N; i += size {
				h.ingest(payloads[(i/size)%len(payloads)])
			}
			b.ReportMetric(float64(threadCPU()-cpu0)/float64(b.N), "cpu-ns/event")
		})
	}

	// flush: one tick with every group dirty (the worst case: all 10,000 subscribers
	// get a message).
	b.Run("flush-all-dirty", func(b *testing.B) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cpu0 := threadCPU()
		defer func() { b.ReportMetric(float64(threadCPU()-cpu0)/float64(b.N)/1e6, "cpu-ms/flush") }()
		for range b.N {
			h.mu.Lock()
			for _, g := range h.groups {
				g.dirty = true
			}
			h.mu.Unlock()
			h.flush(-1)
		}
	})

	// delivery: events published at a steady rate; delay from Publish to delivery.
	b.Run("delivery", func(b *testing.B) {
		const rate = 400 // events per second over all tenants
		const duration = 5 * time.Second
		time.Sleep(time.Second) // let the earlier sub-benchmarks' messages drain
		mu.Lock()
		recording, delays, messages = true, delays[:0], 0
		mu.Unlock()
		tick := time.NewTicker(time.Second / 100)
		defer tick.Stop()
		end := time.Now().Add(duration)
		var publishWorst time.Duration
		i := 0
		for time.Now().Before(end) {
			<-tick.C
			evs := make([]usage.Event, rate/100)
			for j := range evs {
				evs[j] = w.configs[i%len(w.configs)].event(200, 1, 1, 5, time.Now())
				i++
			}
			t0 := time.Now()
			h.Publish(evs)
			publishWorst = max(publishWorst, time.Since(t0))
		}
		time.Sleep(time.Second) // the last events' deliveries
		mu.Lock()
		recording = false
		d := slices.Clone(delays)
		msgs := messages
		mu.Unlock()
		if len(d) == 0 {
			b.Fatal("nothing delivered")
		}
		slices.Sort(d)
		p := func(q float64) float64 { return float64(d[int(q*float64(len(d)-1))]) / float64(time.Millisecond) }
		b.ReportMetric(p(0.50), "p50-ms")
		b.ReportMetric(p(0.99), "p99-ms")
		b.ReportMetric(float64(msgs)/(duration+time.Second).Seconds(), "msgs/s")
		b.ReportMetric(float64(publishWorst.Microseconds()), "publish-worst-µs")
		b.Logf("%d events at %d/s, %d call deliveries measured, %d messages", i, rate, len(d), msgs)
	})
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
