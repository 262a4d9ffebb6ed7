package gen

import (
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/dave/jennifer/jen"
)

// stubsFileName is the user-owned file generate writes once per projection.
const stubsFileName = "handlers.go"

// stubImports are the packages a stub method refers to, by import path, with the
// name the initial file gives them.
func stubImports(pr *Projection, paths importPaths) [][2]string {
	return [][2]string{
		{"context", "context"},
		{"errors", "errors"},
		{pgxPkg, "pgx"},
		{eventstorePkg, "eventstore"},
		{paths.events, "events"},
		{paths.projections + "/" + pr.Name, pr.Name + "gen"},
	}
}

// stubMethod is one handler stub; names maps import paths to the file's local names.
func stubMethod(pr *Projection, ev *Event, recv string, names map[string]string, paths importPaths) *jen.Statement {
	q := func(path, id string) *jen.Statement { return jen.Id(names[path]).Dot(id) }
	return jen.Comment(fmt.Sprintf("On%s handles %s events.", ev.Name, ev.Name)).Line().
		Func().Params(jen.Id(recv).Op("*").Id("Handlers")).Id("On"+ev.Name).Params(
		jen.Id("ctx").Add(q("context", "Context")),
		jen.Id("tx").Add(q(pgxPkg, "Tx")),
		jen.Id("env").Op("*").Add(q(eventstorePkg, "Event")),
		jen.Id("e").Add(q(paths.events, ev.Name)),
	).Error().Block(
		jen.Return(q("errors", "New").Call(jen.Lit(fmt.Sprintf("%s: On%s not implemented", pr.Name, ev.Name)))),
	)
}

// stubsFile is the first version of projections/<name>/handlers.go. It has no
// generated header: the file belongs to the user from the start. With declare false
// (the package already declares Handlers in another file) it holds only the stubs.
func stubsFile(pr *Projection, evs []*Event, recv string, declare bool, paths importPaths) ([]byte, error) {
	genPkg := pr.Name + "gen"
	var b bytes.Buffer
	if declare {
		fmt.Fprintf(&b, "// Package %s holds the handlers of the %s projection.\n", pr.Name, pr.Name)
		b.WriteString("//\n// esgen generate wrote this file once and never overwrites it: it is yours. When the\n")
		b.WriteString("// projection handles a new event, generate appends a stub for it at the end.\n")
	} else {
		b.WriteString("// esgen generate wrote these stubs for events the projection handles; the file is yours.\n\n")
	}
	fmt.Fprintf(&b, "package %s\n\nimport (\n", pr.Name)
	names := map[string]string{}
	for _, imp := range stubImports(pr, paths) {
		names[imp[0]] = imp[1]
		switch {
		case imp[1] == genPkg && declare:
			fmt.Fprintf(&b, "\t%s %q\n", imp[1], imp[0])
		case imp[1] != genPkg:
			fmt.Fprintf(&b, "\t%q\n", imp[0])
		}
	}
	b.WriteString(")\n\n")
	if declare {
		fmt.Fprintf(&b, "// Handlers implements %s.Handler. Each method runs inside the batch's\n", genPkg)
		b.WriteString("// transaction tx: write the read model through tx so it commits with the checkpoint.\n")
		b.WriteString("type Handlers struct{}\n\n")
		fmt.Fprintf(&b, "var _ %s.Handler = (*Handlers)(nil)\n", genPkg)
	}
	for _, ev := range evs {
		fmt.Fprintf(&b, "\n%#v\n", stubMethod(pr, ev, recv, names, paths))
	}
	out, err := groupImports(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("format %s stubs: %w", pr.Name, err)
	}
	return out, nil
}

// stubsPlan decides what happens to projections/<name>/handlers.go: written in full
// when the package does not exist yet; otherwise the existing bytes followed by stubs
// for the handled events no method of Handlers in the package covers yet (nil content:
// nothing to write). Methods On<Event> for events the projection no longer handles
// are reported as warnings, never deleted.
func stubsPlan(dir string, pr *Projection, paths importPaths, relDir string) (content []byte, appended []string, warnings []string, err error) {
	file := filepath.Join(dir, stubsFileName)
	existing, err := os.ReadFile(file)
	absent := errors.Is(err, fs.ErrNotExist)
	if err != nil && !absent {
		return nil, nil, nil, fmt.Errorf("read handler stubs: %w", err)
	}
	methods, recv, declared, err := handlersMethods(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	if absent && !declared {
		content, err := stubsFile(pr, pr.Handles, recv, true, paths)
		return content, nil, nil, err
	}

	handled := map[string]bool{}
	for _, ev := range pr.Handles {
		handled["On"+ev.Name] = true
	}
	var unused []string
	for name := range methods {
		if strings.HasPrefix(name, "On") && len(name) > 2 && name[2] >= 'A' && name[2] <= 'Z' && !handled[name] {
			unused = append(unused, name)
		}
	}
	slices.Sort(unused)
	for _, name := range unused {
		warnings = append(warnings, fmt.Sprintf("%s: method Handlers.%s handles no event of projection %s any more; it is no longer called (delete it when you no longer need it)",
			filepath.ToSlash(filepath.Join(relDir, methods[name])), name, pr.Name))
	}

	var missing []*Event
	for _, ev := range pr.Handles {
		if _, ok := methods["On"+ev.Name]; !ok {
			missing = append(missing, ev)
		}
	}
	switch {
	case len(missing) == 0 && absent:
		return nil, nil, warnings, nil
	case len(missing) == 0:
		return existing, nil, warnings, nil
	case absent:
		// Handlers lives in other files of the package: a new file with just the stubs.
		content, err := stubsFile(pr, missing, recv, false, paths)
		for _, ev := range missing {
			appended = append(appended, "On"+ev.Name)
		}
		return content, appended, warnings, err
	}

	names, err := importNames(file, existing)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, imp := range stubImports(pr, paths) {
		if imp[0] == paths.projections+"/"+pr.Name {
			continue // the stubs themselves do not refer to the generated package
		}
		if _, ok := names[imp[0]]; !ok {
			def := imp[1]
			names[imp[0]] = def
			warnings = append(warnings, fmt.Sprintf("%s: appended stubs use %s.; add the import %q", filepath.ToSlash(filepath.Join(relDir, stubsFileName)), def, imp[0]))
		}
	}
	var b bytes.Buffer
	for _, ev := range missing {
		fmt.Fprintf(&b, "\n%#v\n", stubMethod(pr, ev, recv, names, paths))
		appended = append(appended, "On"+ev.Name)
	}
	snippet, err := format.Source(b.Bytes())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("format appended %s stubs: %w", pr.Name, err)
	}
	content = slices.Clone(existing)
	if len(content) > 0 && content[len(content)-1] != '\n' {
		content = append(content, '\n')
	}
	content = append(content, '\n')
	content = append(content, bytes.TrimLeft(snippet, "\n")...)
	return content, appended, warnings, nil
}

// handlersMethods parses the package in dir (test files aside) and returns the
// methods declared on Handlers, each with the file declaring it, the receiver name
// they use ("h" when there is none) and whether the package declares type Handlers.
func handlersMethods(dir string) (methods map[string]string, recv string, declared bool, err error) {
	methods = map[string]string{}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return methods, "h", false, nil
	}
	if err != nil {
		return nil, "", false, fmt.Errorf("read handler package: %w", err)
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, "", false, fmt.Errorf("parse handlers: %w", err)
		}
		for _, d := range af.Decls {
			if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.TYPE {
				for _, sp := range gd.Specs {
					declared = declared || sp.(*ast.TypeSpec).Name.Name == "Handlers"
				}
			}
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv == nil || len(fd.Recv.List) != 1 {
				continue
			}
			t := fd.Recv.List[0].Type
			if st, ok := t.(*ast.StarExpr); ok {
				t = st.X
			}
			if id, ok := t.(*ast.Ident); !ok || id.Name != "Handlers" {
				continue
			}
			methods[fd.Name.Name] = name
			if recv == "" && len(fd.Recv.List[0].Names) == 1 && fd.Recv.List[0].Names[0].Name != "_" {
				recv = fd.Recv.List[0].Names[0].Name
			}
		}
	}
	if recv == "" {
		recv = "h"
	}
	return methods, recv, declared, nil
}

// importNames maps the import paths of a Go file to the names it uses for them.
func importNames(file string, src []byte) (map[string]string, error) {
	af, err := parser.ParseFile(token.NewFileSet(), file, src, parser.ImportsOnly)
	if err != nil {
		return nil, fmt.Errorf("parse handlers: %w", err)
	}
	names := map[string]string{}
	for _, imp := range af.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			continue
		}
		switch {
		case imp.Name != nil && (imp.Name.Name == "_" || imp.Name.Name == "."):
			continue
		case imp.Name != nil:
			names[p] = imp.Name.Name
		default:
			names[p] = defaultImportName(p)
		}
	}
	return names, nil
}

// defaultImportName guesses a package's name from its path: the last element,
// skipping a major version suffix (github.com/jackc/pgx/v5 → pgx).
func defaultImportName(p string) string {
	parts := strings.Split(p, "/")
	last := parts[len(parts)-1]
	if len(parts) > 1 && len(last) > 1 && last[0] == 'v' && strings.Trim(last[1:], "0123456789") == "" {
		last = parts[len(parts)-2]
	}
	return last
}
