package langflow

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
)

// Flow is what Langflow answered when a flow was created. Langflow assigns
// the id and suffixes clashing names and endpoint names, so these values,
// not the export's, are what must be stored and used for runs.
type Flow struct {
	ID           string
	Name         string
	EndpointName string
}

// CreateFlow imports a flow export with POST {base}/api/v1/flows/.
func (c *Client) CreateFlow(ctx context.Context, export json.RawMessage) (Flow, error) {
	const op = "create flow"
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(export, &doc); err != nil || doc == nil {
		return Flow{}, &Error{Kind: ErrBadRequest, Op: op, Detail: "flow export must be a JSON object"}
	}
	// These fields belong to the Langflow instance the flow was exported
	// from. Sending them back would make Langflow reuse the original id (two
	// imports of one starter project would clash) or point at another user's
	// folder.
	for _, k := range []string{"id", "user_id", "folder_id"} {
		delete(doc, k)
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return Flow{}, &Error{Kind: ErrBadRequest, Op: op, Detail: "flow export cannot be re-encoded"}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var flow Flow
	err = c.guard(ctx, op, func() error {
		resp, err := c.do(ctx, op, http.MethodPost, "/api/v1/flows/", "", body, "application/json", true)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var got struct {
			ID           string  `json:"id"`
			Name         string  `json:"name"`
			EndpointName *string `json:"endpoint_name"`
		}
		var decodeErr error
		if err := c.readBody(op, resp.Body, func(raw []byte) error {
			decodeErr = json.Unmarshal(raw, &got)
			return nil
		}); err != nil {
			return err
		}
		if decodeErr != nil || got.ID == "" {
			return &Error{Kind: ErrUpstream, Op: op, Status: resp.StatusCode, Detail: "langflow did not return the new flow's id"}
		}
		flow = Flow{ID: got.ID, Name: got.Name}
		if got.EndpointName != nil {
			flow.EndpointName = *got.EndpointName
		}
		return nil
	})
	if err != nil {
		return Flow{}, err
	}
	return flow, nil
}

// DeleteFlow removes a flow with DELETE {base}/api/v1/flows/{id}. A flow
// that is already gone counts as deleted, so retries and reconciliation
// can call it blindly.
func (c *Client) DeleteFlow(ctx context.Context, id string) error {
	const op = "delete flow"
	if id == "" {
		return &Error{Kind: ErrBadRequest, Op: op, Detail: "flow id is required"}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	err := c.guard(ctx, op, func() error {
		resp, err := c.do(ctx, op, http.MethodDelete, "/api/v1/flows/"+url.PathEscape(id), "", nil, "application/json", true)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}
