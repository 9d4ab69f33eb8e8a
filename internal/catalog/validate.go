package catalog

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/gsvdev/agentregistry/internal/apperr"
)

var (
	currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)
	// A tweakable field is "field" (flat tweak) or "Component-ID.field" (nested).
	tweakFieldPattern = regexp.MustCompile(`^([A-Za-z0-9_-]{1,100}\.)?[A-Za-z0-9_]{1,100}$`)
)

// validatePlan checks what ent's field validators cannot express.
func validatePlan(currency *string, tweakable []string) error {
	if currency != nil && !currencyPattern.MatchString(*currency) {
		return apperr.Invalid("input.currency", "currency must be an ISO 4217 code such as EUR")
	}
	for i, f := range tweakable {
		field := fmt.Sprintf("input.tweakableFields[%d]", i)
		if !tweakFieldPattern.MatchString(f) {
			return apperr.Invalid(field, "%q is not a tweak field (\"field\" or \"Component-ID.field\")", f)
		}
		// Custom code runs on the runtime: buyers never get to change it.
		if name := f[strings.LastIndex(f, ".")+1:]; name == "code" {
			return apperr.Invalid(field, "the code field of a component cannot be opened to buyers")
		}
	}
	return nil
}
