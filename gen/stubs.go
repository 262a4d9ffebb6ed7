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
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/dave/jennifer/jen"
)

// stubsFileName is the user-owned file generate writes once per projection.
const stubsFileName = "handlers.go"

// stubImports are the packages the first version of a stub file refers to, by import
// path, with the name it gives them.
func stubImports(pr *Projection, paths importPaths) []importSpec {
	return append(methodImports(paths, true),
		importSpec{projectorPkg, "projector"},
		importSpec{paths.projections + "/" + pr.Name, pr.Name + "gen"})
}

// methodImports are the packages the stubs of Reset refer to and, with events, those
// of handler methods.
func methodImports(paths importPaths, events bool) []importSpec {
	imports := []importSpec{
		{"context", "context"},
		{"errors", "errors"},
		{pgxPkg, "pgx"},
	}
	if events {
		imports = append(imports,
			importSpec{eventstorePkg, "eventstore"},
			importSpec{projectionPkg, "projection"},
			importSpec{paths.events, "events"})
	}
	return imports
}

// stubMethod is one handler stub; names maps import paths to the file's local names.
// Its body shows the fast way to write: through projection.Queue(tx) (and, with sqlc,
// the read model's typed queries on it), tx itself being for results.
func stubMethod(pr *Projection, ev *Event, recv string, names map[string]string, paths importPaths, rm readModelFiles) *jen.Statement {
	q := func(path, id string) *jen.Statement { return jen.Id(names[path]).Dot(id) }
	example := fmt.Sprintf("e.g. q.Exec(ctx, `INSERT INTO %s ...`, env.AggregateID, env.AggregateVersion)", readModelTable(pr.Name))
	if rm.queries != "" {
		example = fmt.Sprintf("e.g. readmodel.New(q).%s(ctx, readmodel.%sParams{...})", rm.query, rm.query)
	}
	return jen.Comment(fmt.Sprintf("On%s handles %s events.", ev.Name, ev.Name)).Line().
		Func().Params(jen.Id(recv).Op("*").Id("Handlers")).Id("On"+ev.Name).Params(
		jen.Id("ctx").Add(q("context", "Context")),
		jen.Id("tx").Add(q(pgxPkg, "Tx")),
		jen.Id("env").Op("*").Add(q(eventstorePkg, "Event")),
		jen.Id("e").Add(q(paths.events, ev.Name)),
	).Error().Block(
		jen.Comment("Write through q what needs no result: the batch sends its queued writes"),
		jen.Comment("in one round trip. Use tx for RowsAffected or to read what a write returns."),
		jen.Id("q").Op(":=").Add(q(projectionPkg, "Queue")).Call(jen.Id("tx")),
		jen.Id("_").Op("=").Id("q").Comment(example),
		jen.Return(q("errors", "New").Call(jen.Lit(fmt.Sprintf("%s: On%s not implemented", pr.Name, ev.Name)))),
	)
}

// resetStub is the stub of the Handlers' Reset method, which a rebuild calls.
func resetStub(pr *Projection, recv string, names map[string]string) string {
	return doc(fmt.Sprintf("Reset clears the read model when the projection is rebuilt (esgen rebuild). It runs in the transaction that puts the checkpoints back at the start of the stream, before the first event is handled again: delete everything the handlers wrote, e.g.")) +
		fmt.Sprintf("\n//\n//\t_, err := tx.Exec(ctx, `TRUNCATE %s`)\n//\treturn err\n", readModelTable(pr.Name)) +
		fmt.Sprintf("func (%s *Handlers) Reset(ctx %s.Context, tx %s.Tx) error {\n\treturn %s.New(%q)\n}\n",
			recv, names["context"], names[pgxPkg], names["errors"], pr.Name+": Reset not implemented")
}

// constructorName is the function of the user's handler package that the generated
// main calls, when the package declares it, to build the handlers.
const constructorName = "NewHandlers"

// stubsFile is the first version of projections/<name>/handlers.go. It has no
// generated header: the file belongs to the user from the start. With declare false
// (the package already declares Handlers in another file) it holds only the stubs,
// with Reset when reset is true. rm names the read model's files for the comments.
func stubsFile(pr *Projection, evs []*Event, recv string, declare, reset bool, paths importPaths, rm readModelFiles) ([]byte, error) {
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
	imports := stubImports(pr, paths)
	if !declare {
		imports = methodImports(paths, len(evs) > 0)
	}
	for _, imp := range imports {
		names[imp.path] = imp.name
		fmt.Fprintf(&b, "\t%s\n", imp.line())
	}
	b.WriteString(")\n\n")
	if declare {
		where := "the read model"
		if rm.migration != "" {
			where = fmt.Sprintf("the read model (its tables are in %s)", rm.migration)
		}
		text := fmt.Sprintf("Handlers implements %s.Handler. Each method runs inside the batch's transaction tx: write %s through it, so it commits with the checkpoint. Queue the writes whose result the handler does not read (RowsAffected, returned rows) with projection.Queue(tx): the batch then sends them in one round trip.", genPkg, where)
		if rm.queries != "" {
			text += fmt.Sprintf(" The typed queries sqlc generates from %s run on both, e.g.\n\n\treadmodel.New(projection.Queue(tx)).%s(ctx, readmodel.%sParams{AggregateID: env.AggregateID, Version: env.AggregateVersion})", rm.queries, rm.query, rm.query)
		}
		b.WriteString(wrapDoc(text) + "\n")
		b.WriteString("type Handlers struct{}\n\n")
		fmt.Fprintf(&b, "var _ %s.Handler = (*Handlers)(nil)\n\n", genPkg)
		b.WriteString(doc(fmt.Sprintf("%s returns the handlers of a projector process: its generated main (%s) calls it once, before the first batch. Give Handlers the fields they need and fill them in here, from deps (the process's pool, logger and partitions) or your own configuration; an error stops the process.", constructorName, path.Join(paths.cmd, pr.Name+"-projector"))) + "\n")
		fmt.Fprintf(&b, "func %s(ctx context.Context, deps projector.Deps) (*Handlers, error) {\n\treturn &Handlers{}, nil\n}\n", constructorName)
	}
	if reset {
		b.WriteString("\n" + resetStub(pr, recv, names))
	}
	for _, ev := range evs {
		fmt.Fprintf(&b, "\n%#v\n", stubMethod(pr, ev, recv, names, paths, rm))
	}
	out, err := groupImports(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("format %s stubs: %w", pr.Name, err)
	}
	return out, nil
}

// wrapDoc is doc for a comment whose paragraphs may hold an indented code line
// (starting with a tab), which is kept as it is.
func wrapDoc(text string) string {
	var out []string
	for _, para := range strings.Split(text, "\n") {
		if strings.HasPrefix(para, "\t") {
			out = append(out, "//"+para)
			continue
		}
		out = append(out, doc(para))
	}
	return strings.Join(out, "\n")
}

// stubPlan is what happens to a projection's handler package.
type stubPlan struct {
	content     []byte // the stub file's new content; nil: nothing to write
	base        []byte // the file's bytes when planned; nil when it does not exist
	appended    []string
	warnings    []string
	constructor bool // the package (as planned) declares NewHandlers
}

// stubsPlan decides what happens to projections/<name>/handlers.go: written in full
// when the package does not exist yet; otherwise the existing bytes followed by stubs
// for the handled events no method of Handlers in the package covers yet (nil content:
// nothing to write), with the imports those stubs need added to the file's import
// block. Methods On<Event> for events the projection no longer handles are reported as
// warnings, never deleted.
func stubsPlan(dir string, pr *Projection, paths importPaths, relDir string, rm readModelFiles) (stubPlan, error) {
	file := filepath.Join(dir, stubsFileName)
	existing, err := os.ReadFile(file)
	absent := errors.Is(err, fs.ErrNotExist)
	if err != nil && !absent {
		return stubPlan{}, fmt.Errorf("read handler stubs: %w", err)
	}
	pkg, err := handlersPackage(dir)
	if err != nil {
		return stubPlan{}, err
	}
	plan := stubPlan{base: existing, constructor: pkg.constructor}
	if absent && !pkg.declared {
		plan.content, err = stubsFile(pr, pr.Handles, pkg.recv, true, true, paths, rm)
		plan.constructor = true
		return plan, err
	}

	handled := map[string]bool{}
	for _, ev := range pr.Handles {
		handled["On"+ev.Name] = true
	}
	var unused []string
	for name := range pkg.methods {
		if strings.HasPrefix(name, "On") && len(name) > 2 && name[2] >= 'A' && name[2] <= 'Z' && !handled[name] {
			unused = append(unused, name)
		}
	}
	slices.Sort(unused)
	for _, name := range unused {
		plan.warnings = append(plan.warnings, fmt.Sprintf("%s: method Handlers.%s handles no event of projection %s any more; it is no longer called (delete it when you no longer need it)",
			filepath.ToSlash(filepath.Join(relDir, pkg.methods[name])), name, pr.Name))
	}

	var missing []*Event
	for _, ev := range pr.Handles {
		if _, ok := pkg.methods["On"+ev.Name]; !ok {
			missing = append(missing, ev)
		}
	}
	// Handler packages written before rebuilds existed have no Reset.
	_, hasReset := pkg.methods["Reset"]
	switch {
	case len(missing) == 0 && hasReset && absent:
		return plan, nil
	case len(missing) == 0 && hasReset:
		plan.content = existing
		return plan, nil
	case absent:
		// Handlers lives in other files of the package: a new file with just the stubs.
		plan.content, err = stubsFile(pr, missing, pkg.recv, false, !hasReset, paths, rm)
		if !hasReset {
			plan.appended = append(plan.appended, "Reset")
		}
		for _, ev := range missing {
			plan.appended = append(plan.appended, "On"+ev.Name)
		}
		return plan, err
	}

	names, add, err := missingImports(file, existing, methodImports(paths, len(missing) > 0))
	if err != nil {
		return stubPlan{}, err
	}
	var b bytes.Buffer
	if !hasReset {
		b.WriteString("\n" + resetStub(pr, pkg.recv, names))
		plan.appended = append(plan.appended, "Reset")
	}
	for _, ev := range missing {
		fmt.Fprintf(&b, "\n%#v\n", stubMethod(pr, ev, pkg.recv, names, paths, rm))
		plan.appended = append(plan.appended, "On"+ev.Name)
	}
	snippet, err := format.Source(b.Bytes())
	if err != nil {
		return stubPlan{}, fmt.Errorf("format appended %s stubs: %w", pr.Name, err)
	}
	content, err := insertImports(file, slices.Clone(existing), add)
	if err != nil {
		return stubPlan{}, fmt.Errorf("add imports to %s: %w", filepath.ToSlash(filepath.Join(relDir, stubsFileName)), err)
	}
	if len(content) > 0 && content[len(content)-1] != '\n' {
		content = append(content, '\n')
	}
	content = append(content, '\n')
	plan.content = append(content, bytes.TrimLeft(snippet, "\n")...)
	return plan, nil
}

// newHandlerPackage reports whether the projection's handler package in dir is still
// to be written: it has no handlers.go and no file declaring Handlers.
func newHandlerPackage(dir string) (bool, error) {
	if _, err := os.Stat(filepath.Join(dir, stubsFileName)); err == nil {
		return false, nil
	}
	pkg, err := handlersPackage(dir)
	return !pkg.declared, err
}

// handlerPackage is what the user's handler package declares.
type handlerPackage struct {
	methods     map[string]string // the methods of Handlers, each with its file
	recv        string            // the receiver name they use ("h" when there is none)
	declared    bool              // the package declares type Handlers
	constructor bool              // the package declares func NewHandlers
}

// handlersPackage parses the package in dir (test files aside).
func handlersPackage(dir string) (handlerPackage, error) {
	pkg := handlerPackage{methods: map[string]string{}}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		pkg.recv = "h"
		return pkg, nil
	}
	if err != nil {
		return pkg, fmt.Errorf("read handler package: %w", err)
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return pkg, fmt.Errorf("parse handlers: %w", err)
		}
		for _, d := range af.Decls {
			if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.TYPE {
				for _, sp := range gd.Specs {
					pkg.declared = pkg.declared || sp.(*ast.TypeSpec).Name.Name == "Handlers"
				}
			}
			fd, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			if fd.Recv == nil {
				pkg.constructor = pkg.constructor || fd.Name.Name == constructorName
				continue
			}
			if len(fd.Recv.List) != 1 {
				continue
			}
			t := fd.Recv.List[0].Type
			if st, ok := t.(*ast.StarExpr); ok {
				t = st.X
			}
			if id, ok := t.(*ast.Ident); !ok || id.Name != "Handlers" {
				continue
			}
			pkg.methods[fd.Name.Name] = name
			if pkg.recv == "" && len(fd.Recv.List[0].Names) == 1 && fd.Recv.List[0].Names[0].Name != "_" {
				pkg.recv = fd.Recv.List[0].Names[0].Name
			}
		}
	}
	if pkg.recv == "" {
		pkg.recv = "h"
	}
	return pkg, nil
}

// importNames maps the import paths of a Go file to the names it uses for them.
// missingImports returns the names under which the file src refers to each import
// path (its own imports, plus those of want it lacks) and the imports of want to add.
// A name another import of the file already has gets a number.
func missingImports(file string, src []byte, want []importSpec) (map[string]string, []importSpec, error) {
	names, err := importNames(file, src)
	if err != nil {
		return nil, nil, err
	}
	used := map[string]bool{}
	for _, n := range names {
		used[n] = true
	}
	var add []importSpec
	for _, imp := range want {
		if _, ok := names[imp.path]; ok {
			continue
		}
		name := imp.name
		for i := 2; used[name]; i++ {
			name = fmt.Sprintf("%s%d", imp.name, i)
		}
		names[imp.path], used[name] = name, true
		add = append(add, importSpec{imp.path, name})
	}
	return names, add, nil
}

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
