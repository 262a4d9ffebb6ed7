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
