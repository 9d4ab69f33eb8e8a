package server_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/apikey/keys"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/internal/seed"
	"github.com/gsvdev/agentregistry/server"
)

// startReplica starts a production-mode instance on the shared database.
func startReplica(t *testing.T, env map[string]string) *server.Server {
	t.Helper()
	cfg, err := server.LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() { _ = srv.Run(ctx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	return srv
}

func invokeStatus(t *testing.T, base, key string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/agent-gateway/invoke/", strings.NewReader(`{"input":"hi"}`))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Two replicas share PostgreSQL (and Redis when asked): a key revoked through replica A
// is refused by replica B, which had it cached, within a second.
func TestRevocationReachesOtherReplicaWithinOneSecond(t *testing.T) {
	dbtest.PostgresURL(t) // skips (or fails under CI) before any subtest when PostgreSQL is absent
	buses := map[string]string{"postgres-notify": ""}
	if r := os.Getenv("TEST_REDIS_URL"); r != "" {
		buses["redis-pubsub"] = r
	} else if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but TEST_REDIS_URL is not set")
	}
	for name, redisURL := range buses {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			env, _ := prodEnv(t)
			env["REDIS_URL"] = redisURL
			a := startReplica(t, env)
			b := startReplica(t, env)
			demo, err := seed.Demo(ctx, a.DB().Client)
			if err != nil {
				t.Fatal(err)
			}
			sys := auth.SystemContext(ctx)
			created, err := a.Keys().Create(sys, keys.CreateParams{ConfigID: demo.Config, Name: "k", Kind: apikey.KindSecret})
			if err != nil {
				t.Fatal(err)
			}
			baseA, baseB := "http://"+a.Addr(), "http://"+b.Addr()
			if got := invokeStatus(t, baseB, created.Secret); got != http.StatusOK {
				t.Fatalf("B before revocation: %d", got)
			}
			if _, err := a.Keys().Revoke(sys, created.Key.ID); err != nil {
				t.Fatal(err)
			}
			if got := invokeStatus(t, baseA, created.Secret); got != http.StatusUnauthorized {
				t.Fatalf("A right after revocation: %d", got)
			}
			start := time.Now()
			for invokeStatus(t, baseB, created.Secret) != http.StatusUnauthorized {
				if time.Since(start) > time.Second {
					t.Fatalf("B still accepts the revoked key after %v", time.Since(start))
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Logf("revocation reached the other replica in %v", time.Since(start))
		})
	}
}
