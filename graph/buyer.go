package graph

import (
	"context"
	"fmt"
	"html"
	"strings"

	"github.com/99designs/gqlgen/graphql"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/graph/model"
	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/apikey/keys"
	"github.com/gsvdev/agentregistry/internal/auth"
)

func (r *Resolver) uploadDocument(ctx context.Context, configID pulid.ID, file graphql.Upload) (*ent.Document, error) {
	return r.svc.Documents.Upload(ctx, configID, file.Filename, file.ContentType, file.File)
}

// embedSnippet mints a publishable key and wraps it in the widget's script tags. The
// snippet is built here, once, because the key is only ever known at its creation.
func (r *Resolver) embedSnippet(ctx context.Context, configID pulid.ID) (*model.EmbedSnippet, error) {
	if r.svc.Keys == nil || r.links.PublicURL == "" {
		return nil, errNotConfigured
	}
	created, err := r.svc.Keys.Create(ctx, keys.CreateParams{
		ConfigID: configID, Name: "widget", Kind: apikey.KindPublishable, CreatedBy: auth.FromContext(ctx).Subject,
	})
	if err != nil {
		return nil, err
	}
	base := strings.TrimRight(r.links.PublicURL, "/")
	snippet := fmt.Sprintf(`<script src="%s/widget/loader.js"></script>
<script>
  GSVWidget.init({ configId: "%s", apiKey: "%s", position: "bottom-right", theme: "light" });
</script>
`, html.EscapeString(base), created.Key.ConfigID, created.Secret)
	return &model.EmbedSnippet{HTML: snippet, PublishableKey: created.Secret, Key: created.Key}, nil
}

// links points the portal at Waldur, where marketplace, billing and organisation
// management live. The organisation link names the viewer's first tenant's Waldur
// customer when it is known.
func (r *Resolver) viewerLinks(ctx context.Context, v *auth.Viewer) (*model.ViewerLinks, error) {
	if r.links.WaldurURL == "" {
		return &model.ViewerLinks{}, nil
	}
	base := strings.TrimRight(r.links.WaldurURL, "/")
	market, billing, org := base+"/marketplace/", base+"/billing/", base+"/organizations/"
	if ids := v.TenantIDs(); len(ids) > 0 {
		t, err := r.client.Tenant.Get(ctx, ids[0])
		if err != nil && !ent.IsNotFound(err) {
			return nil, err
		}
		if t != nil && t.WaldurCustomerUUID != nil {
			org = base + "/organizations/" + *t.WaldurCustomerUUID + "/dashboard/"
		}
	}
	return &model.ViewerLinks{Marketplace: &market, Billing: &billing, Organization: &org}, nil
}
