package provision_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/flow"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/internal/langflow"
	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime"
	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime/echotest"
	"github.com/gsvdev/agentregistry/internal/langflow/provision"
)

const export = `{"name":"Mine","data":{"nodes":[],"edges":[]}}`

func setup(t *testing.T, driver string) (context.Context, *ent.Client, *ent.Flow, *echoruntime.Runtime, *provision.Service) {
	t.Helper()
	ctx := auth.SystemContext(context.Background())
	db := dbtest.Open(t, driver)
	tn := db.Client.Tenant.Create().SetName("P").SetSlug("p").SaveX(ctx)
	ag := db.Client.Agent.Create().SetTenantID(tn.ID).SetName("A").SetSlug("a").SaveX(ctx)
	f := db.Client.Flow.Create().SetTenantID(tn.ID).SetAgentID(ag.ID).SetVersion(1).
		SetDefinition(json.RawMessage(export)).SetChecksum("x").SaveX(ctx)
	rt, srv := echotest.Start(t, echoruntime.Options{StrictFlows: true})
	client, err := langflow.New(langflow.Options{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return ctx, db.Client, f, rt, provision.New(db.Client, client)
}

// Provisioning stores the id Langflow assigns; a second call is a no-op; deprovisioning
// deletes it from the runtime and is idempotent too.
func TestProvisionRoundTrip(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			ctx, _, f, rt, svc := setup(t, driver)
			got, err := svc.Provision(ctx, f.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.RuntimeStatus != flow.RuntimeStatusProvisioned || got.RuntimeFlowID == nil {
				t.Fatalf("after provision: %+v", got)
			}
			ids := rt.FlowIDs()
			if len(ids) != 1 || ids[0] != *got.RuntimeFlowID {
				t.Fatalf("runtime has %v, row says %v", ids, *got.RuntimeFlowID)
			}
			again, err := svc.Provision(ctx, f.ID)
			if err != nil || *again.RuntimeFlowID != *got.RuntimeFlowID || len(rt.FlowIDs()) != 1 {
				t.Fatalf("second provision: %v, runtime flows %v", err, rt.FlowIDs())
			}
			down, err := svc.Deprovision(ctx, f.ID)
			if err != nil {
				t.Fatal(err)
			}
			if down.RuntimeStatus != flow.RuntimeStatusDeprovisioned || down.RuntimeFlowID != nil || len(rt.FlowIDs()) != 0 {
				t.Fatalf("after deprovision: %+v, runtime flows %v", down, rt.FlowIDs())
			}
			if _, err := svc.Deprovision(ctx, f.ID); err != nil {
				t.Fatalf("second deprovision: %v", err)
			}
			// Deployed again after being taken down: a fresh runtime id.
			re, err := svc.Provision(ctx, f.ID)
			if err != nil || re.RuntimeFlowID == nil || *re.RuntimeFlowID == *got.RuntimeFlowID {
				t.Fatalf("re-provision: %v %+v", err, re)
			}
		})
	}
}

// A runtime failure marks the flow failed with Langflow's sanitized detail (never the
// traceback), and a retry after the runtime recovers succeeds.
func TestProvisionFailureIsRecordedAndRetryable(t *testing.T) {
	ctx, client, f, rt, svc := setup(t, dbtest.Drivers(t)[0])
	rt.SetFault(echoruntime.Fault{PathPrefix: "/api/v1/flows", Status: http.StatusInternalServerError,
		Detail: "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: secret-internal-path"})
	_, err := svc.Provision(ctx, f.ID)
	if err == nil || !errors.Is(err, langflow.ErrUpstream) {
		t.Fatalf("provision against failing runtime: %v", err)
	}
	failed := client.Flow.GetX(ctx, f.ID)
	if failed.RuntimeStatus != flow.RuntimeStatusFailed || failed.RuntimeError == "" ||
		strings.Contains(failed.RuntimeError, "Traceback") || strings.Contains(failed.RuntimeError, "x.py") {
		t.Fatalf("failed flow row: status %s, error %q", failed.RuntimeStatus, failed.RuntimeError)
	}
	rt.ClearFault()
	got, err := svc.Provision(ctx, f.ID)
	if err != nil || got.RuntimeStatus != flow.RuntimeStatusProvisioned {
		t.Fatalf("retry: %v %+v", err, got)
	}
	if got.RuntimeError != "" {
		t.Fatalf("runtime error not cleared after success: %q", got.RuntimeError)
	}
}
