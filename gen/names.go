package gen

import (
	"go/token"
	"regexp"
	"strings"
	"unicode"
)

var (
	exportedName   = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)
	fieldName      = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
	projectionName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// initialisms are written in capitals inside Go names: owner_id becomes OwnerID.
var initialisms = map[string]bool{
	"ACL": true, "API": true, "ASCII": true, "CPU": true, "CSS": true, "DNS": true,
	"EOF": true, "GUID": true, "HTML": true, "HTTP": true, "HTTPS": true, "ID": true,
	"IP": true, "JSON": true, "LHS": true, "QPS": true, "RAM": true, "RHS": true,
	"RPC": true, "SLA": true, "SMTP": true, "SQL": true, "SSH": true, "TCP": true,
	"TLS": true, "TTL": true, "UDP": true, "UI": true, "UID": true, "URI": true,
	"URL": true, "UTF8": true, "UUID": true, "VM": true, "XML": true, "XSRF": true,
	"XSS": true,
}

// goFieldName turns a spec field name (snake_case or camelCase) into an exported Go
// name: owner_id → OwnerID, avatarUrl → AvatarURL, amount → Amount.
func goFieldName(name string) string {
	var words []string
	for part := range strings.SplitSeq(name, "_") {
		words = append(words, splitCamel(part)...)
	}
	var b strings.Builder
	for _, w := range words {
		if up := strings.ToUpper(w); initialisms[up] {
			b.WriteString(up)
			continue
		}
		r := []rune(w)
		r[0] = unicode.ToUpper(r[0])
		b.WriteString(string(r))
	}
	return b.String()
}

// splitCamel splits "avatarUrl" into "avatar", "Url"; runs of capitals stay together.
func splitCamel(s string) []string {
	var words []string
	start := 0
	r := []rune(s)
	for i := 1; i < len(r); i++ {
		if unicode.IsUpper(r[i]) && !unicode.IsUpper(r[i-1]) {
			words = append(words, string(r[start:i]))
			start = i
		}
	}
	if start < len(r) {
		words = append(words, string(r[start:]))
	}
	return words
}

// predeclared are Go's predeclared identifiers: a projection package may not be named
// after one.
var predeclared = map[string]bool{
	"any": true, "append": true, "bool": true, "byte": true, "cap": true, "clear": true,
	"close": true, "comparable": true, "complex": true, "complex64": true, "complex128": true,
	"copy": true, "delete": true, "error": true, "false": true, "float32": true,
	"float64": true, "imag": true, "int": true, "int8": true, "int16": true, "int32": true,
	"int64": true, "iota": true, "len": true, "make": true, "max": true, "min": true,
	"new": true, "nil": true, "panic": true, "print": true, "println": true, "real": true,
	"recover": true, "rune": true, "string": true, "true": true, "uint": true, "uint8": true,
	"uint16": true, "uint32": true, "uint64": true, "uintptr": true,
}

// reservedPackage reports why name cannot be a projection's package name, or "".
func reservedPackage(name string) string {
	switch {
	case token.IsKeyword(name):
		return "is a Go keyword"
	case predeclared[name]:
		return "is a predeclared Go identifier"
	case name == "main" || name == "init":
		return "is reserved by Go"
	}
	return ""
}
