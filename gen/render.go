package gen

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"

	"github.com/dave/jennifer/jen"
)

func specBase(spec *Spec) string {
	if spec.File == "" {
		return "esgen.yaml"
	}
	return filepath.Base(spec.File)
}

// commentWidth is the most columns a generated comment line takes, as in most
// hand-written Go.
const commentWidth = 80

// doc wraps text into // comment lines for a top-level declaration; a "\n" in text
// starts a new line, an empty line an empty comment line. jennifer writes a
// comment that starts with "//" as it is.
func doc(text string) string {
	return wrapComment(text, 0)
}

// wrapComment wraps text into // comment lines of at most commentWidth columns
// when the comment is indented by indent tabs (a tab counts as four columns). A
// word longer than a line gets a line of its own.
func wrapComment(text string, indent int) string {
	width := commentWidth - 4*indent - len("//")
	var b strings.Builder
	for i, para := range strings.Split(text, "\n") {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString("//")
		n := 0 // columns on the current line after "//"
		for _, w := range strings.Fields(para) {
			if n > 0 && n+1+len(w) > width {
				b.WriteString("\n//")
				n = 0
			}
			b.WriteString(" " + w)
			n += 1 + len(w)
		}
	}
	return b.String()
}

// field is one "name: value" element of a composite literal.
func field(name string, value jen.Code) jen.Code {
	return jen.Id(name).Op(":").Add(value)
}

// fields is the body of a composite literal, one element a line, in the order given:
// list fields in the order their struct declares them (jen.Dict would sort them by
// name).
func fields(elems ...jen.Code) *jen.Statement {
	return jen.ValuesFunc(func(g *jen.Group) {
		for _, e := range elems {
			g.Line().Add(e)
		}
		g.Line()
	})
}

// render formats f (jennifer runs go/format), groups its imports the usual way and
// names the output in errors.
func render(name string, f *jen.File) ([]byte, error) {
	var buf bytes.Buffer
	if err := f.Render(&buf); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	out, err := groupImports(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return out, nil
}

// groupImports splits the import block of a Go file into the standard library first,
// then a blank line, then every other package, as goimports does.
func groupImports(src []byte) ([]byte, error) {
	fset := token.NewFileSet()
	af, err := parser.ParseFile(fset, "", src, parser.ImportsOnly)
	if err != nil {
		return nil, fmt.Errorf("group imports: %w", err)
	}
	var decl *ast.GenDecl
	for _, d := range af.Decls {
		if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.IMPORT && gd.Lparen.IsValid() {
			decl = gd
			break
		}
	}
	if decl == nil {
		return src, nil
	}
	var std, other []string
	for _, s := range decl.Specs {
		is := s.(*ast.ImportSpec)
		line := is.Path.Value
		if is.Name != nil {
			line = is.Name.Name + " " + line
		}
		first, _, _ := strings.Cut(strings.Trim(is.Path.Value, `"`), "/")
		if strings.Contains(first, ".") {
			other = append(other, line)
		} else {
			std = append(std, line)
		}
	}
	var block strings.Builder
	block.WriteString("\n")
	for _, l := range std {
		block.WriteString("\t" + l + "\n")
	}
	if len(std) > 0 && len(other) > 0 {
		block.WriteString("\n")
	}
	for _, l := range other {
		block.WriteString("\t" + l + "\n")
	}
	start := fset.Position(decl.Lparen).Offset + 1
	end := fset.Position(decl.Rparen).Offset
	out := append(append(append([]byte{}, src[:start]...), block.String()...), src[end:]...)
	formatted, err := format.Source(out)
	if err != nil {
		return nil, fmt.Errorf("group imports: %w", err)
	}
	return formatted, nil
}
