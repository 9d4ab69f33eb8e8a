// Package pulid implements the opaque, prefixed IDs that every entity carries.
//
// An ID looks like "agt_01JD3ZK5N8W6Q2R7T9V4X1Y3Z5": a three-letter type prefix, an
// underscore and a ULID (48 bits of time, 80 bits of crypto randomness). The prefix lets
// node(id:) find the table without a lookup; the randomness makes IDs not enumerable;
// the time part keeps B-tree inserts local and gives a stable default order.
package pulid

import (
	"crypto/rand"
	"database/sql/driver"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/oklog/ulid/v2"
)

// ID is an opaque entity identifier.
type ID string

// prefixLen is the length of every type prefix ("agt").
const prefixLen = 3

// entropy is crypto/rand: IDs must not be guessable. ulid.Monotonic is not used because
// it would make consecutive IDs within one millisecond predictable.
var entropy io.Reader = rand.Reader

// MustNew returns a new ID with the given prefix. It panics only if the system's random
// source fails, which leaves nothing sensible to do.
func MustNew(prefix string) ID {
	if len(prefix) != prefixLen {
		panic("pulid: prefix must be " + strconv.Itoa(prefixLen) + " characters: " + prefix)
	}
	return ID(prefix + "_" + ulid.MustNew(ulid.Now(), entropy).String())
}

// Prefix returns the type prefix of the ID, or "" when the ID is not well formed.
func (id ID) Prefix() string {
	s := string(id)
	if len(s) != prefixLen+1+ulid.EncodedSize || s[prefixLen] != '_' {
		return ""
	}
	return s[:prefixLen]
}

// Valid reports whether the ID is well formed (prefix, separator and a ULID).
func (id ID) Valid() bool {
	if id.Prefix() == "" {
		return false
	}
	_, err := ulid.ParseStrict(string(id)[prefixLen+1:])
	return err == nil
}

// Parse validates s as an ID.
func Parse(s string) (ID, error) {
	id := ID(strings.TrimSpace(s))
	if !id.Valid() {
		return "", fmt.Errorf("pulid: malformed id")
	}
	return id, nil
}

// UnmarshalGQL implements graphql.Unmarshaler. Malformed IDs are rejected here so that
// resolvers never see them.
func (id *ID) UnmarshalGQL(v any) error {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case ID:
		s = string(x)
	default:
		return fmt.Errorf("id must be a string")
	}
	parsed, err := Parse(s)
	if err != nil {
		return err
	}
	*id = parsed
	return nil
}

// MarshalGQL implements graphql.Marshaler.
func (id ID) MarshalGQL(w io.Writer) {
	_, _ = io.WriteString(w, strconv.Quote(string(id)))
}

// Scan implements sql.Scanner.
func (id *ID) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*id = ""
	case string:
		*id = ID(v)
	case []byte:
		*id = ID(string(v))
	default:
		return fmt.Errorf("pulid: unexpected type %T", src)
	}
	return nil
}

// Value implements driver.Valuer.
func (id ID) Value() (driver.Value, error) { return string(id), nil }
