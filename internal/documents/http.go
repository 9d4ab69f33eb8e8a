package documents

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// DownloadPath is the route of a document's bytes; DownloadURL builds it.
const DownloadPath = "GET /api/documents/{id}/content"

// DownloadURL is where a document's bytes are served (to the portal, with its token).
func DownloadURL(id pulid.ID) string { return "/api/documents/" + string(id) + "/content" }

// Handler serves document downloads to authenticated viewers (the auth middleware runs
// first). The bytes go out as an attachment with sniffing off, so nothing a buyer
// uploads is ever rendered as a page on our origin.
func (s *Service) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if auth.FromContext(r.Context()) == nil {
			writeErr(w, http.StatusUnauthorized, "UNAUTHENTICATED", "authentication required")
			return
		}
		id, err := pulid.Parse(r.PathValue("id"))
		if err != nil {
			writeErr(w, http.StatusNotFound, "NOT_FOUND", "not found")
			return
		}
		d, body, err := s.Content(r.Context(), id)
		if err != nil {
			if ent.IsNotFound(err) {
				writeErr(w, http.StatusNotFound, "NOT_FOUND", "not found")
				return
			}
			writeErr(w, http.StatusInternalServerError, "INTERNAL", "internal error")
			return
		}
		h := w.Header()
		h.Set("Content-Type", d.ContentType)
		h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, strings.ReplaceAll(d.Filename, `"`, "")))
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
		h.Set("Cache-Control", "private, no-store")
		h.Set("ETag", `"`+d.Sha256+`"`)
		_, _ = io.Copy(w, body)
	})
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%q,"message":%q}}`, code, msg)
}
