// Package echotest starts an echoruntime behind an httptest server for
// tests. It lives apart from echoruntime so that production code (the --dev
// runtime) never links the testing package.
package echotest

import (
	"net/http/httptest"
	"testing"

	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime"
)

// Start serves a new Runtime on a local httptest server that is closed when
// the test ends. Use srv.URL as the Langflow base URL and rt to inject
// faults and inspect calls.
func Start(t testing.TB, opts echoruntime.Options) (*echoruntime.Runtime, *httptest.Server) {
	t.Helper()
	rt := echoruntime.New(opts)
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	return rt, srv
}
