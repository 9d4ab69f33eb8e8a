package main

import (
	"context"
	"net/http"
	"time"

	h "github.com/gsvdev/agentregistry/loadtest/internal/harness"
)

// prebuilt is the -bin flag: a binary to measure instead of building one.
var prebuilt string

// serviceEnv is the -service-env flag: variables the service is started with.
var serviceEnv h.EnvFlag

// service is the running agentregistry under test plus the gateway's own checks.
type service struct{ *h.Service }

// startService prepares a scratch database (migrate, seed, limits lifted, one key) and
// starts `agentregistry serve` against upstream.
func startService(ctx context.Context, bin, dbURL, upstream string) (*service, error) {
	s, err := h.StartService(ctx, h.ServiceOptions{Bin: bin, DBURL: dbURL, Upstream: upstream, Env: serviceEnv})
	if err != nil {
		return nil, err
	}
	return &service{s}, nil
}

func (s *service) close() { s.Close() }

func (s *service) usageRows(ctx context.Context) (total, ok int, err error) {
	err = s.DB.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE status BETWEEN 200 AND 299) FROM usage_records`).Scan(&total, &ok)
	return total, ok, err
}

// missingRecords counts the ids (X-Request-Id of 2xx answers) that have no usage record:
// with durable metering it must be 0 whatever else happened.
func (s *service) missingRecords(ctx context.Context, ids []string) (int, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT id, request_id FROM usage_records`)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var id, rid string
		if err := rows.Scan(&id, &rid); err != nil {
			return 0, err
		}
		have[id], have[rid] = true, true
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	missing := 0
	for _, id := range ids {
		if id == "" || !have[id] {
			missing++
		}
	}
	return missing, nil
}

// probeDurability sends invokes one at a time, at most one per every (none when 0),
// until d has passed (or n were sent, when n > 0) and, the moment each 2xx arrives,
// looks its request id up in usage_records. With durable metering the row is
// committed before the answer is written, so it must already be there; a recorder
// that answers first and writes later passes the end-of-run row count but fails
// here. It returns the 2xx answers checked and how many had no row yet.
//
// Under measured load the probe is paced: back to back it added some 260 calls and
// lookups a second to the 1,000/s open-loop run, so the gateway's figures were taken
// at 1,260/s against the baseline's 1,000.
func (s *service) probeDurability(ctx context.Context, c *http.Client, t h.Target, d, every time.Duration, n int) (checked, missing int, err error) {
	end := time.Now().Add(d)
	next := time.Now()
	for i := 0; time.Now().Before(end) && (n <= 0 || i < n) && ctx.Err() == nil; i++ {
		if wait := time.Until(next); wait > 0 {
			select {
			case <-ctx.Done():
				return checked, missing, nil
			case <-time.After(wait):
			}
		}
		next = time.Now().Add(every)
		code, id, derr := h.Do(ctx, c, &t)
		if derr != nil || code/100 != 2 {
			continue
		}
		var found bool
		if err := s.DB.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM usage_records WHERE id = $1 OR request_id = $1)`, id).Scan(&found); err != nil {
			return checked, missing, err
		}
		checked++
		if !found {
			missing++
		}
	}
	return checked, missing, nil
}
