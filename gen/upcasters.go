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
	"strings"
)

// upcastersFileName is the user-owned file generate writes once in the upcasters
// package, and appends stubs to.
const upcastersFileName = "upcasters.go"

// upcasterStep is one upcaster: version From of Event to From+1.
type upcasterStep struct {
	ev       *Event
	from, to *EventVersion
}

func (s upcasterStep) name() string { return upcasterName(s.ev, s.from.Version) }

// upcasterSteps are the upcasters spec needs, in spec order.
func upcasterSteps(spec *Spec) []upcasterStep {
	var steps []upcasterStep
	for _, agg := range spec.Aggregates {
		for _, ev := range agg.Events {
			vs := ev.Versions()
			for i := 0; i+1 < len(vs); i++ {
				steps = append(steps, upcasterStep{ev: ev, from: vs[i], to: vs[i+1]})
			}
		}
	}
	return steps
}

// upcasterStub is the stub of one upcaster; names maps import paths to the file's
// names. It copies the fields the two versions share and lists the others in
// comments, and returns an error until it is written.
func upcasterStub(s upcasterStep, names map[string]string, paths importPaths) string {
	vp := names[paths.versions]
	from, to := versionType(s.ev, s.from.Version), versionType(s.ev, s.to.Version)
	var b strings.Builder
	b.WriteString(doc(fmt.Sprintf("%s turns a stored version-%d %s into version %d. The generated decoder (events.Decode%s) calls it for every version-%d event it reads.",
		s.name(), s.from.Version, s.ev.Name, s.to.Version, s.ev.Name, s.from.Version)) + "\n")
	fmt.Fprintf(&b, "func %s(e %s.%s) (%s.%s, error) {\n\treturn %s.%s{\n", s.name(), vp, from, vp, to, vp, to)
	old := map[string]*Field{}
	for _, f := range s.from.Fields {
		old[f.Name] = f
	}
	kept := map[string]bool{}
	for _, f := range s.to.Fields {
		o := old[f.Name]
		switch {
		case o != nil && o.Type.String() == f.Type.String():
			fmt.Fprintf(&b, "\t\t%s: e.%s,\n", f.GoName, o.GoName)
			kept[f.Name] = true
		case o != nil:
			fmt.Fprintf(&b, "\t\t// %s: %s in version %d, %s in version %d\n", f.GoName, goString(o.Type), s.from.Version, goString(f.Type), s.to.Version)
			kept[f.Name] = true
		default:
			fmt.Fprintf(&b, "\t\t// %s %s: new in version %d\n", f.GoName, goString(f.Type), s.to.Version)
		}
	}
	for _, f := range s.from.Fields {
		if !kept[f.Name] {
			fmt.Fprintf(&b, "\t\t// e.%s (%s): not in version %d\n", f.GoName, goString(f.Type), s.to.Version)
		}
	}
	fmt.Fprintf(&b, "\t}, %s.New(%q)\n}\n", names["errors"], "upcasters: "+s.name()+" not implemented")
	return b.String()
}

// upcastersPlan decides what happens to the upcasters package's upcasters.go: written
// in full when the package has no upcasters yet; otherwise its bytes followed by a stub
// for each upcaster no function of the package declares, with the imports those need
// added. It returns nil content when there is nothing to write.
func upcastersPlan(dir string, spec *Spec, paths importPaths) (stubPlan, error) {
	steps := upcasterSteps(spec)
	pkgDir := filepath.Join(dir, filepath.FromSlash(spec.Output.Upcasters))
	file := filepath.Join(pkgDir, upcastersFileName)
	existing, err := os.ReadFile(file)
	absent := errors.Is(err, fs.ErrNotExist)
	if err != nil && !absent {
		return stubPlan{}, fmt.Errorf("read upcasters: %w", err)
	}
	declared, others, err := packageFuncs(pkgDir)
	if err != nil {
		return stubPlan{}, err
	}
	plan := stubPlan{base: existing}
	var missing []upcasterStep
	for _, s := range steps {
		if !declared[s.name()] {
			missing = append(missing, s)
			plan.appended = append(plan.appended, s.name())
		}
	}
	imports := []importSpec{{"errors", "errors"}, {paths.versions, "versions"}}
	if absent {
		if len(missing) == 0 {
			return plan, nil
		}
		var b bytes.Buffer
		if !others {
			b.WriteString(doc("Package upcasters turns stored events of older versions into the next version, one version at a time: the generated decoders of the events package chain these functions from the version an event was stored with up to its current version. esgen generate wrote this file once and appends a stub for every new version; it is yours. It must not import the events package, which imports it.") + "\n")
		} else {
			b.WriteString("// esgen generate wrote these stubs for new event versions; the file is yours.\n\n")
		}
		b.WriteString("package upcasters\n\nimport (\n")
		names := map[string]string{}
		for _, imp := range imports {
			names[imp.path] = imp.name
			fmt.Fprintf(&b, "\t%s\n", imp.line())
		}
		b.WriteString(")\n")
		for _, s := range missing {
			b.WriteString("\n" + upcasterStub(s, names, paths))
		}
		plan.content, err = groupImports(b.Bytes())
		if err != nil {
			return stubPlan{}, fmt.Errorf("format upcaster stubs: %w", err)
		}
		plan.appended = nil
		return plan, nil
	}
	if len(missing) == 0 {
		plan.content = existing
		return plan, nil
	}
	names, add, err := missingImports(file, existing, imports)
	if err != nil {
		return stubPlan{}, err
	}
	var b bytes.Buffer
	for _, s := range missing {
		b.WriteString("\n" + upcasterStub(s, names, paths))
	}
	snippet, err := format.Source(b.Bytes())
	if err != nil {
		return stubPlan{}, fmt.Errorf("format appended upcaster stubs: %w", err)
	}
	content, err := insertImports(file, slices.Clone(existing), add)
	if err != nil {
		return stubPlan{}, fmt.Errorf("add imports to %s: %w", filepath.ToSlash(filepath.Join(spec.Output.Upcasters, upcastersFileName)), err)
	}
	if len(content) > 0 && content[len(content)-1] != '\n' {
		content = append(content, '\n')
	}
	content = append(content, '\n')
	plan.content = append(content, bytes.TrimLeft(snippet, "\n")...)
	return plan, nil
}

// packageFuncs returns the top-level functions the Go files of the package in dir
// declare (test files aside), and whether it has any Go file other than
// upcasters.go.
func packageFuncs(dir string) (map[string]bool, bool, error) {
	funcs := map[string]bool{}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return funcs, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read upcasters package: %w", err)
	}
	others := false
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		others = others || name != upcastersFileName
		af, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, false, fmt.Errorf("parse upcasters: %w", err)
		}
		for _, d := range af.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil {
				funcs[fd.Name.Name] = true
			}
		}
	}
	return funcs, others, nil
}
