package gen

import (
	"fmt"
	"strings"

	"github.com/dave/jennifer/jen"
)

// Scalar types a field can have, with the Go type each becomes.
var scalarTypes = []string{"string", "bool", "int32", "int64", "float64", "time", "uuid", "bytes", "json"}

// supportedTypes is the list quoted in "unsupported type" errors.
const supportedTypes = "string, bool, int32, int64, float64, time, uuid, bytes, json, []T, T?"

// Type is the type of an event field: a scalar, or a list of a type, optionally marked
// optional with a trailing "?".
type Type struct {
	Scalar   string // one of scalarTypes; empty for a list
	Elem     *Type  // the element type of a list
	Optional bool   // "T?": may be absent; omitted from JSON when empty
}

// String gives the type as written in the spec.
func (t *Type) String() string {
	var s string
	if t.Elem != nil {
		s = "[]" + t.Elem.String()
	} else {
		s = t.Scalar
	}
	if t.Optional {
		s += "?"
	}
	return s
}

// ParseType parses a field type such as "int64", "[]string" or "time?". The "?" marks
// the whole field optional; list elements cannot be optional.
func ParseType(s string) (*Type, error) {
	t := &Type{}
	rest := strings.TrimSpace(s)
	if r, ok := strings.CutSuffix(rest, "?"); ok {
		t.Optional = true
		rest = r
	}
	elem, err := parseRequiredType(rest)
	if err != nil {
		return nil, err
	}
	t.Scalar, t.Elem = elem.Scalar, elem.Elem
	return t, nil
}

func parseRequiredType(s string) (*Type, error) {
	if e, ok := strings.CutPrefix(s, "[]"); ok {
		if strings.HasSuffix(e, "?") {
			return nil, fmt.Errorf("unsupported type %q: list elements cannot be optional (supported: %s)", s, supportedTypes)
		}
		elem, err := parseRequiredType(e)
		if err != nil {
			return nil, err
		}
		return &Type{Elem: elem}, nil
	}
	for _, sc := range scalarTypes {
		if s == sc {
			return &Type{Scalar: s}, nil
		}
	}
	return nil, fmt.Errorf("unsupported type %q (supported: %s)", s, supportedTypes)
}

// goType is the Go type of t. Optional scalars become pointers; optional lists, bytes
// and json stay as they are (nil means absent) and are omitted when empty.
func (t *Type) goType() jen.Code {
	var c *jen.Statement
	switch {
	case t.Elem != nil:
		c = jen.Index().Add(t.Elem.goType())
	case t.Scalar == "time":
		c = jen.Qual("time", "Time")
	case t.Scalar == "uuid":
		c = jen.Qual("github.com/google/uuid", "UUID")
	case t.Scalar == "bytes":
		c = jen.Index().Byte()
	case t.Scalar == "json":
		c = jen.Qual("encoding/json", "RawMessage")
	default:
		c = jen.Id(t.Scalar)
	}
	if t.Optional && t.nilable() {
		return c
	}
	if t.Optional {
		return jen.Op("*").Add(c)
	}
	return c
}

// nilable reports whether the Go type already has nil as its absent value.
func (t *Type) nilable() bool {
	return t.Elem != nil || t.Scalar == "bytes" || t.Scalar == "json"
}

// goString renders t's Go type as source, for tests and messages.
func goString(t *Type) string {
	return jen.Null().Add(t.goType()).GoString()
}
