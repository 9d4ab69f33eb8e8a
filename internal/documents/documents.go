// Package documents stores the training documents buyers attach to a config. Rows and
// bytes live in the database today behind the Storage interface, so moving the bytes to
// object storage later changes one type, not the callers. Every call runs with the
// caller's context: privacy decides whose config and documents are reachable.
package documents

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/document"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/apperr"
)

// MaxSize is the largest document accepted (the GraphQL upload cap matches it).
const MaxSize = 10 << 20

// allowedTypes are the content types a document may have: text and office formats an
// agent can be trained on. HTML and SVG are not accepted: served back from our origin
// they could run script.
var allowedTypes = map[string]bool{
	"application/pdf": true, "text/plain": true, "text/markdown": true, "text/csv": true,
	"application/json": true,
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document": true,
	"application/msword": true,
}

// Service manages documents.
type Service struct {
	client *ent.Client
}

// New returns a Service.
func New(client *ent.Client) *Service { return &Service{client: client} }

// Upload stores a document for a config. The content type is checked against the
// allowlist (from the declared type, or the file extension when the client sent a
// generic one); the size is checked while reading, so a lying Content-Length cannot
// make the server read more than MaxSize.
func (s *Service) Upload(ctx context.Context, configID pulid.ID, filename, contentType string, r io.Reader) (*ent.Document, error) {
	cfg, err := s.client.AgentConfig.Get(ctx, configID)
	if err != nil {
		return nil, err
	}
	name, err := cleanName(filename)
	if err != nil {
		return nil, err
	}
	ct, err := checkType(name, contentType)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("documents: read upload: %w", err)
	}
	if len(data) > MaxSize {
		return nil, apperr.Invalid("file", "documents are limited to %d MiB", MaxSize>>20)
	}
	if len(data) == 0 {
		return nil, apperr.Invalid("file", "the file is empty")
	}
	sum := sha256.Sum256(data)
	return s.client.Document.Create().SetTenantID(cfg.TenantID).SetConfigID(cfg.ID).
		SetFilename(name).SetContentType(ct).SetSize(int64(len(data))).
		SetSha256(hex.EncodeToString(sum[:])).SetContent(data).Save(ctx)
}

// Content returns a document's row and bytes, for download.
func (s *Service) Content(ctx context.Context, id pulid.ID) (*ent.Document, io.Reader, error) {
	d, err := s.client.Document.Query().Where(document.ID(id)).Only(ctx)
	if err != nil {
		return nil, nil, err
	}
	return d, bytes.NewReader(d.Content), nil
}

// Delete removes a document.
func (s *Service) Delete(ctx context.Context, id pulid.ID) error {
	return s.client.Document.DeleteOneID(id).Exec(ctx)
}

// cleanName keeps the base name only (no directories a client could smuggle in), and
// refuses names that are not printable text.
func cleanName(name string) (string, error) {
	name = path.Base(strings.ReplaceAll(strings.TrimSpace(name), "\\", "/"))
	if name == "" || name == "." || name == "/" || len(name) > 255 || !utf8.ValidString(name) ||
		strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", apperr.Invalid("file", "the file name must be 1 to 255 printable characters")
	}
	return name, nil
}

func checkType(name, declared string) (string, error) {
	ct, _, _ := mime.ParseMediaType(declared)
	if ct == "" || ct == "application/octet-stream" {
		ct, _, _ = mime.ParseMediaType(mime.TypeByExtension(strings.ToLower(path.Ext(name))))
		if strings.HasSuffix(strings.ToLower(name), ".md") {
			ct = "text/markdown"
		}
	}
	if !allowedTypes[ct] {
		return "", apperr.Invalid("file", "documents must be PDF, Word, text, Markdown, CSV or JSON")
	}
	return ct, nil
}
