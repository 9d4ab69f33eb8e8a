package widget

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/gateway"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// EntSettings reads widget settings from the database, caching each config briefly: every
// page view of a buyer's site asks for them, and a portal edit may take a few seconds to
// show.
type EntSettings struct {
	client *ent.Client
	ttl    time.Duration
	max    int
	now    func() time.Time

	mu    sync.Mutex
	cache map[pulid.ID]cachedSettings
}

type cachedSettings struct {
	s       Settings
	err     error // only gateway.ErrConfigNotFound is cached
	expires time.Time
}

// NewEntSettings returns a source reading through client; ttl <= 0 means 10s.
func NewEntSettings(client *ent.Client, ttl time.Duration) *EntSettings {
	if client == nil {
		panic("widget: NewEntSettings needs a client")
	}
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	return &EntSettings{client: client, ttl: ttl, max: 10_000, now: time.Now, cache: map[pulid.ID]cachedSettings{}}
}

// WidgetSettings implements SettingsSource.
func (e *EntSettings) WidgetSettings(ctx context.Context, id pulid.ID) (Settings, error) {
	e.mu.Lock()
	c, ok := e.cache[id]
	e.mu.Unlock()
	if ok && e.now().Before(c.expires) {
		return c.s, c.err
	}
	// The caller verified a key naming this config: reading it as the system leaks
	// nothing, and only public fields leave this function.
	cfg, err := e.client.AgentConfig.Get(auth.SystemContext(ctx), id)
	var s Settings
	switch {
	case ent.IsNotFound(err):
		err = gateway.ErrConfigNotFound
	case err != nil:
		return Settings{}, fmt.Errorf("widget: load config settings: %w", err)
	default:
		s = Settings{
			DisplayName: cfg.DisplayName, Greeting: cfg.Greeting, AvatarURL: cfg.AvatarURL,
			Theme: string(cfg.WidgetTheme), Position: cfg.WidgetPosition,
			PrimaryColor: cfg.WidgetPrimaryColor, Title: cfg.WidgetTitle,
		}
	}
	e.mu.Lock()
	if len(e.cache) >= e.max {
		for k := range e.cache {
			delete(e.cache, k) // map order is random: an arbitrary victim
			break
		}
	}
	e.cache[id] = cachedSettings{s: s, err: err, expires: e.now().Add(e.ttl)}
	e.mu.Unlock()
	return s, err
}

// Invalidate forgets a config, so a portal edit shows on the next page view here.
func (e *EntSettings) Invalidate(id pulid.ID) {
	e.mu.Lock()
	delete(e.cache, id)
	e.mu.Unlock()
}
