// Package provision deploys flow versions to the Langflow runtime and takes them down
// (the original system's RuntimeService). Both operations are idempotent and safe to
// retry: the flow row records where it stands, and Langflow's answer is what is stored.
package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/flow"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/langflow"
)

// Runtime is the part of the Langflow client provisioning uses.
type Runtime interface {
	CreateFlow(ctx context.Context, export json.RawMessage) (langflow.Flow, error)
	DeleteFlow(ctx context.Context, id string) error
	Ready(ctx context.Context) error
}

// Service provisions flows.
type Service struct {
	client  *ent.Client
	runtime Runtime
}

// New returns a Service.
func New(client *ent.Client, runtime Runtime) *Service {
	return &Service{client: client, runtime: runtime}
}

// Provision deploys the flow version to the runtime. A flow already provisioned is left
// as it is. The flow is loaded with the caller's context, so privacy decides who may.
//
// Langflow always assigns a new id (and suffixes clashing names), so a crash between its
// answer and our write leaves an orphan flow there; the deployed copy is named after our
// flow id so such orphans can be found and removed by name.
func (s *Service) Provision(ctx context.Context, id pulid.ID) (*ent.Flow, error) {
	f, err := s.client.Flow.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("provision: load flow: %w", err)
	}
	if f.RuntimeStatus == flow.RuntimeStatusProvisioned && f.RuntimeFlowID != nil {
		return f, nil
	}
	if f, err = f.Update().SetRuntimeStatus(flow.RuntimeStatusProvisioning).SetRuntimeError("").Save(ctx); err != nil {
		return nil, fmt.Errorf("provision: mark provisioning: %w", err)
	}
	export, err := namedExport(f)
	if err != nil {
		return s.fail(ctx, f, err)
	}
	created, err := s.runtime.CreateFlow(ctx, export)
	if err != nil {
		return s.fail(ctx, f, err)
	}
	f, err = f.Update().SetRuntimeFlowID(created.ID).SetRuntimeStatus(flow.RuntimeStatusProvisioned).Save(ctx)
	if err != nil {
		// Langflow has the flow but we could not record it: say so, with its id, rather
		// than leave an untracked copy behind silently.
		return nil, fmt.Errorf("provision: record runtime id %s: %w", created.ID, err)
	}
	return f, nil
}

// Deprovision deletes the flow from the runtime. Deleting a flow Langflow no longer has
// counts as done, and a flow that was never deployed is left as it is.
func (s *Service) Deprovision(ctx context.Context, id pulid.ID) (*ent.Flow, error) {
	f, err := s.client.Flow.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("deprovision: load flow: %w", err)
	}
	if f.RuntimeFlowID == nil {
		if f.RuntimeStatus == flow.RuntimeStatusNotProvisioned {
			return f, nil
		}
		return f.Update().SetRuntimeStatus(flow.RuntimeStatusDeprovisioned).Save(ctx)
	}
	if err := s.runtime.DeleteFlow(ctx, *f.RuntimeFlowID); err != nil {
		return s.fail(ctx, f, err)
	}
	return f.Update().ClearRuntimeFlowID().SetRuntimeStatus(flow.RuntimeStatusDeprovisioned).SetRuntimeError("").Save(ctx)
}

// Health reports whether the runtime is ready to run flows.
func (s *Service) Health(ctx context.Context) error { return s.runtime.Ready(ctx) }

// fail records a failed attempt on the flow (with Langflow's sanitized detail, never a
// traceback) and returns the error.
func (s *Service) fail(ctx context.Context, f *ent.Flow, cause error) (*ent.Flow, error) {
	msg := "runtime error"
	var lfErr *langflow.Error
	if errors.As(cause, &lfErr) && lfErr.Detail != "" {
		msg = lfErr.Detail
	}
	if len(msg) > 500 {
		msg = msg[:500]
	}
	if _, err := f.Update().SetRuntimeStatus(flow.RuntimeStatusFailed).SetRuntimeError(msg).Save(ctx); err != nil {
		return nil, errors.Join(cause, fmt.Errorf("record failure: %w", err))
	}
	return nil, fmt.Errorf("provision flow %s: %w", f.ID, cause)
}

// namedExport names the deployed copy after our flow id.
func namedExport(f *ent.Flow) (json.RawMessage, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(f.Definition, &doc); err != nil || doc == nil {
		return nil, fmt.Errorf("flow %s: definition is not a JSON object", f.ID)
	}
	name, _ := json.Marshal(fmt.Sprintf("agentregistry %s v%d", f.ID, f.Version))
	doc["name"] = name
	return json.Marshal(doc)
}
