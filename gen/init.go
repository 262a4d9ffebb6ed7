package gen

import (
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
)

// InitOptions says where Init writes.
type InitOptions struct {
	// Dir is the folder to write esgen.yaml and generate.go into. Default: ".".
	Dir string
	// Module is the module path for a new go.mod, written only when Dir is in no
	// module yet. Default: the folder's name.
	Module string
}

// EsgenTool is the command line that adds esgen to a module's tools, so that
// `go tool esgen` and the go:generate line esgen init writes work.
const EsgenTool = "go get -tool github.com/esgen-dev/esgen/cmd/esgen"

// NextSteps is what esgen init prints after writing into dir: the commands that take
// the module from the starter spec to a running projector, in the order that works.
// The first is adding esgen to the module's tools, unless its go.mod has it.
func NextSteps(dir string) string {
	var b strings.Builder
	b.WriteString("\nNext steps:\n")
	if !hasEsgenTool(dir) {
		b.WriteString("  " + EsgenTool + "   # once: esgen as a tool of the module\n")
	}
	b.WriteString(`  # edit esgen.yaml: your aggregates, their events, your projections
  go generate ./...           # code, handler stubs, read-model migrations
  # fill in projections/<name>/handlers.go and the tables in sql/migrations/1xx_<name>.sql
  go tool esgen migrate       # esgen's tables and your read models' (DATABASE_URL)
  go build ./cmd/<name>-projector
`)
	return b.String()
}

// hasEsgenTool reports whether the go.mod of the module dir is in lists esgen as a tool.
func hasEsgenTool(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		if data, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil {
			return strings.Contains(string(data), "github.com/esgen-dev/esgen/cmd/esgen")
		}
		if filepath.Dir(d) == d {
			return false
		}
	}
}

// ErrSpecExists is returned by Init when the folder already has an esgen.yaml.
var ErrSpecExists = errors.New("esgen.yaml already exists")

// Init writes a commented starter esgen.yaml and a Go file with the go:generate line
// into opts.Dir, and a go.mod when the folder is in no module yet. It never
// overwrites an existing esgen.yaml, and writes nothing when there is one.
func Init(opts InitOptions) (*Result, error) {
	dir := opts.Dir
	if dir == "" {
		dir = "."
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	specPath := filepath.Join(dir, "esgen.yaml")
	if _, err := os.Stat(specPath); err == nil {
		return nil, fmt.Errorf("%w in %s: init never overwrites it; edit it and run esgen generate", ErrSpecExists, dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("init: %w", err)
	}

	var files []plannedFile
	modPath, err := ModulePath(dir)
	if err != nil {
		// No module yet: start one.
		modPath = opts.Module
		if modPath == "" {
			modPath = packageName(filepath.Base(dir))
		}
		goVersion := strings.TrimPrefix(runtime.Version(), "go")
		if parts := strings.SplitN(goVersion, ".", 3); len(parts) >= 2 {
			goVersion = parts[0] + "." + parts[1]
		}
		files = append(files, plannedFile{path: "go.mod", content: fmt.Appendf(nil, "module %s\n\ngo %s\n", modPath, goVersion)})
	}

	spec, err := renderTemplate("esgen.yaml.tmpl", nil)
	if err != nil {
		return nil, err
	}
	if _, err := Parse("esgen.yaml", spec); err != nil {
		return nil, fmt.Errorf("init: the starter spec is invalid: %w", err)
	}
	files = append(files, plannedFile{path: "esgen.yaml", content: spec})

	pkg, hasDirective, err := existingPackage(dir)
	if err != nil {
		return nil, err
	}
	if !hasDirective {
		if pkg == "" {
			pkg = packageName(path.Base(modPath))
		}
		src, err := renderTemplate("generate.go.tmpl", map[string]string{"Package": pkg})
		if err != nil {
			return nil, err
		}
		name := "generate.go"
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			name = "esgen_generate.go"
		}
		files = append(files, plannedFile{path: name, content: src})
	}

	res := &Result{}
	for _, pf := range files {
		target := filepath.Join(dir, filepath.FromSlash(pf.path))
		if _, err := os.Stat(target); err == nil {
			return res, fmt.Errorf("init: %s appeared while writing; not overwriting it", pf.path)
		}
		if err := writeAtomic(target, pf.content); err != nil {
			return res, fmt.Errorf("init: write %s: %w", pf.path, err)
		}
		res.Files = append(res.Files, FileResult{Path: pf.path, Action: Created})
	}
	return res, nil
}

// existingPackage returns the package name of the Go files in dir ("" when there are
// none) and whether one of them already has esgen's go:generate line.
func existingPackage(dir string) (string, bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", false, fmt.Errorf("init: %w", err)
	}
	pkg, found := "", false
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", false, fmt.Errorf("init: %w", err)
		}
		if strings.Contains(string(src), "esgen-dev/esgen/cmd/esgen generate") || strings.Contains(string(src), "go tool esgen generate") {
			found = true
		}
		af, err := parser.ParseFile(token.NewFileSet(), name, src, parser.PackageClauseOnly)
		if err != nil {
			return "", false, fmt.Errorf("init: parse %s: %w", name, err)
		}
		if pkg == "" {
			pkg = af.Name.Name
		}
	}
	return pkg, found, nil
}

// packageName turns a folder or module path element into a usable package name.
func packageName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r == '_', r >= '0' && r <= '9' && b.Len() > 0:
			b.WriteRune(r)
		}
	}
	name := b.String()
	if name == "" || reservedPackage(name) != "" {
		return "app"
	}
	return name
}
