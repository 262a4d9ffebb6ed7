package gen

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
)

// importSpec is one import a stub needs: its path and the name the stub uses.
type importSpec struct {
	path, name string
}

// line is the import line of s, without indentation.
func (s importSpec) line() string {
	if s.name == defaultImportName(s.path) {
		return strconv.Quote(s.path)
	}
	return s.name + " " + strconv.Quote(s.path)
}

func isStd(p string) bool {
	first, _, _ := strings.Cut(p, "/")
	return !strings.Contains(first, ".")
}

// insertImports returns src with an import line for each of add inserted where gofmt
// and goimports keep it: a standard-library package into the first group of standard
// packages, any other into the last group of other packages, each at its sorted
// place, or into a new group when there is none. Every other byte of src stays as it
// is, so a user's file only gains the lines it was missing.
func insertImports(name string, src []byte, add []importSpec) ([]byte, error) {
	for _, imp := range add {
		var err error
		if src, err = insertImport(name, src, imp); err != nil {
			return nil, err
		}
	}
	return src, nil
}

func insertImport(name string, src []byte, imp importSpec) ([]byte, error) {
	fset := token.NewFileSet()
	af, err := parser.ParseFile(fset, name, src, parser.ImportsOnly|parser.ParseComments)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", name, err)
	}
	off := func(p token.Pos) int { return fset.Position(p).Offset }
	insert := func(at int, text string) []byte {
		out := make([]byte, 0, len(src)+len(text))
		out = append(append(append(out, src[:at]...), text...), src[at:]...)
		return out
	}
	var decl *ast.GenDecl
	var last ast.Node = af.Name
	for _, d := range af.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.IMPORT {
			continue
		}
		last = gd
		if decl == nil && gd.Lparen.IsValid() {
			decl = gd
		}
	}
	if decl == nil {
		// No import block to extend: a new one after the package clause or the last
		// single-line import.
		return insert(off(last.End()), "\n\nimport (\n\t"+imp.line()+"\n)"), nil
	}

	// The block's groups: specs on consecutive lines.
	type group struct {
		specs []*ast.ImportSpec
		std   bool
	}
	var groups []*group
	prevLine := 0
	for _, s := range decl.Specs {
		is := s.(*ast.ImportSpec)
		start := is.Pos()
		if is.Doc != nil {
			start = is.Doc.Pos()
		}
		p, _ := strconv.Unquote(is.Path.Value)
		if len(groups) == 0 || fset.Position(start).Line > prevLine+1 {
			groups = append(groups, &group{std: true})
		}
		g := groups[len(groups)-1]
		g.specs = append(g.specs, is)
		g.std = g.std && isStd(p)
		prevLine = fset.Position(specEnd(is)).Line
	}
	lineStart := func(is *ast.ImportSpec) int {
		start := is.Pos()
		if is.Doc != nil {
			start = is.Doc.Pos()
		}
		return bytes.LastIndexByte(src[:off(start)], '\n') + 1
	}
	lineEnd := func(is *ast.ImportSpec) int {
		end := off(specEnd(is))
		if i := bytes.IndexByte(src[end:], '\n'); i >= 0 {
			return end + i + 1
		}
		return len(src)
	}
	text := "\t" + imp.line() + "\n"
	var target *group
	if isStd(imp.path) {
		for _, g := range groups {
			if g.std {
				target = g
				break
			}
		}
		if target == nil {
			if len(groups) == 0 {
				return insert(off(decl.Rparen), text), nil
			}
			return insert(lineStart(groups[0].specs[0]), text+"\n"), nil
		}
	} else {
		for i := len(groups) - 1; i >= 0; i-- {
			if !groups[i].std {
				target = groups[i]
				break
			}
		}
		if target == nil {
			if len(groups) == 0 {
				return insert(off(decl.Rparen), text), nil
			}
			lastGroup := groups[len(groups)-1]
			return insert(lineEnd(lastGroup.specs[len(lastGroup.specs)-1]), "\n"+text), nil
		}
	}
	for _, is := range target.specs {
		if p, _ := strconv.Unquote(is.Path.Value); p > imp.path {
			return insert(lineStart(is), text), nil
		}
	}
	return insert(lineEnd(target.specs[len(target.specs)-1]), text), nil
}

// specEnd is where an import spec ends, with its line comment.
func specEnd(is *ast.ImportSpec) token.Pos {
	if is.Comment != nil {
		return is.Comment.End()
	}
	return is.End()
}
