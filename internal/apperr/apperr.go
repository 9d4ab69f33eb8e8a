// Package apperr is the error a service returns when the caller did something wrong:
// its message is safe to show, and its code is one of the stable codes clients switch on.
// The GraphQL layer presents it as-is; anything else becomes INTERNAL.
package apperr

import "fmt"

// Stable codes (GraphQL extensions.code).
const (
	Unauthenticated = "UNAUTHENTICATED"
	Forbidden       = "FORBIDDEN"
	NotFound        = "NOT_FOUND"
	BadUserInput    = "BAD_USER_INPUT"
	Conflict        = "CONFLICT"
	RateLimited     = "RATE_LIMITED"
	Internal        = "INTERNAL"
)

// Error is a client-facing error.
type Error struct {
	Code    string
	Message string
	// Field is the input path of a BAD_USER_INPUT problem ("input.allowedOrigins[1]").
	Field string
}

func (e *Error) Error() string { return e.Message }

// Invalid reports a bad input value at field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: BadUserInput, Message: fmt.Sprintf(format, args...), Field: field}
}

// Precondition reports an operation that the current state does not allow (publishing
// an agent without a plan): the input was well formed, the request cannot be met.
func Precondition(format string, args ...any) *Error {
	return &Error{Code: BadUserInput, Message: fmt.Sprintf(format, args...)}
}
