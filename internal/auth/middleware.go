package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/gsvdev/agentregistry/internal/apperr"
)

type authErrorKey struct{}

// withAuthError records that the request presented a credential that was not accepted.
func withAuthError(ctx context.Context, err error) context.Context {
	return context.WithValue(ctx, authErrorKey{}, err)
}

// AuthError returns why the credential presented with this request was not accepted
// (ErrUnauthenticated or ErrUnavailable), or nil when there was none or it was valid.
// GraphQL uses it to answer with extensions.code UNAUTHENTICATED instead of silently serving
// an anonymous result to a client that believes it is signed in.
func AuthError(ctx context.Context) error {
	err, _ := ctx.Value(authErrorKey{}).(error)
	return err
}

// bearerToken extracts the token from an Authorization value. ok is false for any other
// scheme or an empty token. The scheme is case-insensitive (RFC 7235 §2.1).
func bearerToken(h string) (token string, ok bool) {
	scheme, tok, found := strings.Cut(strings.TrimSpace(h), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// Middleware authenticates the Authorization header. It never rejects: without a header the
// request goes on anonymously; with a valid token the Viewer is in the context; with a bad
// one the failure is recorded (AuthError) and the request goes on without a Viewer, so each
// transport answers in its own shape (GraphQL error extensions, RequireViewer's 401 JSON).
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		if h == "" {
			next.ServeHTTP(w, r)
			return
		}
		ctx := r.Context()
		tok, ok := bearerToken(h)
		if !ok {
			// A credential we do not understand (Basic, empty Bearer) is still a failed
			// sign-in, not anonymity: the client expects to be someone.
			a.log.Debug("auth: unsupported Authorization header")
			next.ServeHTTP(w, r.WithContext(withAuthError(ctx, ErrUnauthenticated)))
			return
		}
		v, err := a.Authenticate(ctx, tok)
		if err != nil {
			next.ServeHTTP(w, r.WithContext(withAuthError(ctx, err)))
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(ctx, v)))
	})
}

// FromInitPayload authenticates a websocket connection_init payload. The token is taken from
// "Authorization" / "authorization" ("Bearer x" or a bare token) or "token". Without a token
// the connection is anonymous (ctx, nil). With a bad token the returned context records the
// failure (AuthError) and the error is ErrUnauthenticated or ErrUnavailable, so the caller may
// either refuse the connection or carry on anonymously.
func (a *Authenticator) FromInitPayload(ctx context.Context, payload map[string]any) (context.Context, error) {
	var raw string
	for _, k := range []string{"Authorization", "authorization", "token"} {
		val, ok := payload[k]
		if !ok || val == nil {
			continue
		}
		s, isString := val.(string)
		if !isString {
			return withAuthError(ctx, ErrUnauthenticated), ErrUnauthenticated
		}
		if raw = strings.TrimSpace(s); raw != "" {
			break
		}
	}
	if raw == "" {
		return ctx, nil
	}
	// Anything that is not "Bearer x" is taken as a bare token; "Basic xyz" and the like then
	// simply fail verification.
	tok := raw
	if t, ok := bearerToken(raw); ok {
		tok = t
	}
	v, err := a.Authenticate(ctx, tok)
	if err != nil {
		return withAuthError(ctx, err), err
	}
	return NewContext(ctx, v), nil
}

// Error codes written by RequireViewer, the same strings GraphQL uses in extensions.code.
const (
	CodeUnauthenticated = "UNAUTHENTICATED"
	CodeUnavailable     = "UNAVAILABLE"
)

// RequireViewer answers 401 (or 503 when the issuer cannot be reached) unless Middleware put
// a Viewer in the context. It is for plain HTTP routes; GraphQL decides per field instead.
func RequireViewer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if FromContext(r.Context()) != nil {
			next.ServeHTTP(w, r)
			return
		}
		authErr := AuthError(r.Context())
		switch {
		case errors.Is(authErr, ErrUnavailable):
			w.Header().Set("Retry-After", "5")
			writeError(w, http.StatusServiceUnavailable, CodeUnavailable, ErrUnavailable.Error())
		case authErr != nil:
			// RFC 6750 §3.1: a presented but rejected token is "invalid_token".
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, CodeUnauthenticated, ErrUnauthenticated.Error())
		default:
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeError(w, http.StatusUnauthorized, CodeUnauthenticated, "authentication required")
		}
	})
}

// writeError answers with the service's JSON error shape; an authentication answer is
// never cached.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	apperr.WriteHTTP(w, status, code, msg)
}
