package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/flow"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/apperr"
	"github.com/gsvdev/agentregistry/internal/langflow/flowcheck"
)

// ValidateFlow reports what importing the export would find, without saving anything.
func (s *Service) ValidateFlow(raw []byte) flowcheck.Report {
	return flowcheck.Check(raw, flowcheck.Options{})
}

// ImportFlow stores a new version of the agent's flow, with every secret the checker
// found blanked out, and returns the report. An export the checker rejects is not stored:
// the flow is nil and the report says why (that is an answer, not an error).
func (s *Service) ImportFlow(ctx context.Context, agentID pulid.ID, raw []byte) (*ent.Flow, flowcheck.Report, error) {
	a, err := s.client.Agent.Get(ctx, agentID)
	if err != nil {
		return nil, flowcheck.Report{}, err
	}
	stripped, rep, err := flowcheck.Strip(raw)
	if !rep.Valid {
		return nil, rep, nil
	}
	if err != nil {
		if errors.Is(err, flowcheck.ErrNotStrippable) {
			return nil, rep, apperr.Invalid("definition", "the export could not be fully scanned for secrets, so it was not stored")
		}
		return nil, rep, fmt.Errorf("catalog: strip flow: %w", err)
	}
	var report map[string]any
	b, _ := json.Marshal(rep)
	if err := json.Unmarshal(b, &report); err != nil {
		return nil, rep, fmt.Errorf("catalog: report: %w", err)
	}
	sum := sha256.Sum256(stripped)
	// Versions are per agent; two concurrent imports race on (agent_id, version), and the
	// loser simply takes the next number.
	for attempt := 0; ; attempt++ {
		last := 0
		prev, err := s.client.Flow.Query().Where(flow.AgentID(a.ID)).Order(ent.Desc(flow.FieldVersion)).
			Select(flow.FieldVersion).First(ctx)
		switch {
		case err == nil:
			last = prev.Version
		case !ent.IsNotFound(err):
			return nil, rep, fmt.Errorf("catalog: last flow version: %w", err)
		}
		f, err := s.client.Flow.Create().SetTenantID(a.TenantID).SetAgentID(a.ID).SetVersion(last + 1).
			SetDefinition(json.RawMessage(stripped)).SetChecksum(hex.EncodeToString(sum[:])).
			SetValidationReport(report).Save(ctx)
		if ent.IsConstraintError(err) && attempt < 3 {
			continue
		}
		return f, rep, err
	}
}
