// Package config holds what every edgeloop component's configuration shares: strict YAML
// decoding with ${ENV} expansion, and validation errors that name the offending field by its
// path in the file (for example "gpu.retry_interval: must be positive").
package config

import (
	"errors"
	"fmt"
	"strings"
)

// FieldError is a validation failure of one configuration field, named by its dotted YAML path.
type FieldError struct {
	// Field is the dotted YAML path of the field, such as "metrics.listen" or "models[2].name".
	Field string
	// Msg says what is wrong and, where it helps, what would be right.
	Msg string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Errorf returns a *FieldError for field with a formatted message.
func Errorf(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Nest prefixes the field path of every *FieldError in err with prefix, so a component's
// Validate can name its fields relative to itself and its parent adds where it sits:
// Nest("gpu", Errorf("naming", ...)) reads "gpu.naming: ...". A nil err stays nil; errors that
// are not field errors are returned unchanged.
func Nest(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		errs := joined.Unwrap()
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = Nest(prefix, e)
		}
		return errors.Join(out...)
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		field := prefix
		switch {
		case fe.Field == "":
		case strings.HasPrefix(fe.Field, "["):
			field += fe.Field
		default:
			field += "." + fe.Field
		}
		return &FieldError{Field: field, Msg: fe.Msg}
	}
	return err
}
