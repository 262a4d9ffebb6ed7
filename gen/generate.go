package gen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/esgen-dev/esgen"
)

// Options says what to generate from and where.
type Options struct {
	// Dir is the folder the output folders are relative to. Default: the spec's folder.
	Dir string
	// Spec is the spec file. Default: esgen.yaml in Dir (or in the working directory).
	// A relative path is taken relative to Dir.
	Spec string
	// ModulePath is the import path of Dir. Default: read from the nearest go.mod.
	ModulePath string
	// AcceptBreaking accepts changes to published event schemas that would break
	// stored events (see lock.go): they are listed in Result.Breaking instead of
	// failing, and the lock file is rewritten from the spec.
	AcceptBreaking bool
}

// Action is what Generate did to a file.
type Action string

// The actions Generate reports.
const (
	Created   Action = "created"   // the file did not exist
	Updated   Action = "updated"   // a generated file whose bytes changed
	Unchanged Action = "unchanged" // a generated file whose bytes were already right
	Appended  Action = "appended"  // stubs appended to a user-owned file
	Kept      Action = "kept"      // a user-owned file left alone
)

// FileResult is one file Generate considered.
type FileResult struct {
	Path   string // slash-separated, relative to Options.Dir
	Action Action
	Detail string // e.g. the stubs appended
}

// Result lists what Generate did, and warnings about things it would not touch.
type Result struct {
	Files    []FileResult
	Warnings []string
	// SqlcConfig is the module's sqlc.yaml (an absolute path) when the spec says
	// sqlc: true: run sqlc for it next (RunSqlc).
	SqlcConfig string
	// Breaking lists the breaking changes to published event schemas that
	// Options.AcceptBreaking accepted, as spec errors would name them.
	Breaking []string
}

// versionsDir is the folder of the versions package, inside the events folder.
const versionsDir = "versions"

// kind says who owns a planned file.
type kind int

const (
	generated kind = iota // rewritten on every run
	userOwned             // written once, then only appended to
)

type plannedFile struct {
	path     string // relative, slash-separated
	content  []byte
	kind     kind
	base     []byte // a user-owned file's bytes when planned (nil: it did not exist)
	appended []string
}

// Generate loads and validates the spec, renders every output in memory and then
// writes the files whose bytes differ. When the spec has mistakes it returns an
// ErrorList and writes nothing.
func Generate(opts Options) (*Result, error) {
	dir, specFile, err := resolvePaths(opts)
	if err != nil {
		return nil, err
	}
	displayName := specFile
	if rel, err := filepath.Rel(dir, specFile); err == nil && !strings.HasPrefix(rel, "..") {
		displayName = rel
	}
	data, err := os.ReadFile(specFile)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	spec, err := Parse(displayName, data)
	if err != nil {
		return nil, err
	}
	lockFile := lockName(specFile)
	lockDisplay := filepath.Base(lockFile)
	published, err := readLock(lockFile, lockDisplay)
	if err != nil {
		return nil, err
	}
	breaking := checkLock(spec, published, lockDisplay)
	if len(breaking) > 0 && !opts.AcceptBreaking {
		return nil, breaking
	}
	modPath := opts.ModulePath
	if modPath == "" {
		if modPath, err = ModulePath(dir); err != nil {
			return nil, err
		}
	}
	files, warnings, err := plan(dir, spec, modPath)
	if err != nil {
		return nil, err
	}
	lock, err := newLock(spec).encode()
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", lockDisplay, err)
	}
	lockRel, err := filepath.Rel(dir, lockFile)
	if err != nil {
		return nil, fmt.Errorf("place %s: %w", lockDisplay, err)
	}
	files = append(files, plannedFile{path: filepath.ToSlash(lockRel), content: lock})
	res := &Result{Warnings: warnings}
	for _, e := range breaking {
		res.Breaking = append(res.Breaking, e.Error())
	}
	if spec.Sqlc {
		res.SqlcConfig = filepath.Join(dir, "sqlc.yaml")
	}
	for _, pf := range files {
		fr, err := write(dir, pf)
		if err != nil {
			return res, err
		}
		res.Files = append(res.Files, fr)
	}
	return res, nil
}

func resolvePaths(opts Options) (dir, specFile string, err error) {
	dir = opts.Dir
	specFile = opts.Spec
	if specFile == "" {
		specFile = "esgen.yaml"
	}
	if dir == "" {
		if filepath.IsAbs(specFile) {
			dir = filepath.Dir(specFile)
		} else {
			dir = filepath.Dir(filepath.Clean(specFile))
			specFile = filepath.Base(specFile)
		}
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return "", "", fmt.Errorf("resolve output folder: %w", err)
	}
	if !filepath.IsAbs(specFile) {
		specFile = filepath.Join(dir, specFile)
	}
	return dir, specFile, nil
}

// plan renders every output file of spec. Nothing is written yet.
func plan(dir string, spec *Spec, modPath string) ([]plannedFile, []string, error) {
	out := spec.Output
	paths := importPaths{
		source:      specBase(spec),
		events:      importPath(modPath, out.Events),
		projections: importPath(modPath, out.Projections),
		handlers:    importPath(modPath, out.Handlers),
		cmd:         out.Cmd,
		versions:    importPath(modPath, path.Join(out.Events, versionsDir)),
		upcasters:   importPath(modPath, out.Upcasters),
	}
	var files []plannedFile
	var warnings []string

	migrations, err := migrationFiles(out.Migrations)
	if err != nil {
		return nil, nil, err
	}
	files = append(files, migrations...)

	src, err := render("events.go", eventsFile(spec, paths))
	if err != nil {
		return nil, nil, err
	}
	files = append(files, plannedFile{path: path.Join(out.Events, "events.go"), content: src})
	if spec.versioned() {
		// Older versions: their structs, and the user's upcasters between them.
		src, err := render("versions.go", versionsFile(spec))
		if err != nil {
			return nil, nil, err
		}
		files = append(files, plannedFile{path: path.Join(out.Events, versionsDir, "versions.go"), content: src})
		up, err := upcastersPlan(dir, spec, paths)
		if err != nil {
			return nil, nil, err
		}
		if up.content != nil {
			files = append(files, plannedFile{path: path.Join(out.Upcasters, upcastersFileName), content: up.content, kind: userOwned, base: up.base, appended: up.appended})
		}
	}

	numbers, err := scanMigrations(dir, out.Migrations)
	if err != nil {
		return nil, nil, err
	}
	for _, pr := range spec.Projections {
		src, err := render(pr.Name+" projection.go", projectionFile(pr, paths))
		if err != nil {
			return nil, nil, err
		}
		files = append(files, plannedFile{path: path.Join(out.Projections, pr.Name, "projection.go"), content: src})

		relDir := path.Join(out.Handlers, pr.Name)
		pkgDir := filepath.Join(dir, filepath.FromSlash(relDir))
		fresh, err := newHandlerPackage(pkgDir)
		if err != nil {
			return nil, nil, fmt.Errorf("projection %s: %w", pr.Name, err)
		}
		var rm readModelFiles
		if fresh {
			// A new projection: its read model's migration (and queries) to start from.
			var rmFiles []plannedFile
			if rmFiles, rm, err = readModelPlan(dir, spec, pr, numbers); err != nil {
				return nil, nil, fmt.Errorf("projection %s: %w", pr.Name, err)
			}
			files = append(files, rmFiles...)
		}
		sp, err := stubsPlan(pkgDir, pr, paths, relDir, rm)
		if err != nil {
			return nil, nil, fmt.Errorf("projection %s: %w", pr.Name, err)
		}
		warnings = append(warnings, sp.warnings...)
		if sp.content != nil {
			files = append(files, plannedFile{path: path.Join(relDir, stubsFileName), content: sp.content, kind: userOwned, base: sp.base, appended: sp.appended})
		}

		src, err = render(pr.Name+" projector main.go", projectorMain(pr, paths, sp.constructor))
		if err != nil {
			return nil, nil, err
		}
		files = append(files, plannedFile{path: path.Join(out.Cmd, pr.Name+"-projector", "main.go"), content: src})
	}

	if spec.Sqlc {
		content, err := renderTemplate("sqlc.yaml.tmpl", map[string]string{"Spec": specBase(spec), "Migrations": out.Migrations, "Queries": queriesDir})
		if err != nil {
			return nil, nil, err
		}
		existing, err := os.ReadFile(filepath.Join(dir, "sqlc.yaml"))
		if err == nil {
			content = existing // user-owned once written
		}
		files = append(files, plannedFile{path: "sqlc.yaml", content: content, kind: userOwned, base: existing})
	}

	warnings = append(warnings, staleWarnings(dir, spec, migrations)...)
	return files, warnings, nil
}

func importPath(modPath, rel string) string {
	if rel == "." {
		return modPath
	}
	return modPath + "/" + rel
}

// migrationFiles renders esgen's embedded migrations into folder.
func migrationFiles(folder string) ([]plannedFile, error) {
	entries, err := fs.ReadDir(esgen.Migrations, "sql/migrations")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var files []plannedFile
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		sql, err := fs.ReadFile(esgen.Migrations, "sql/migrations/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("read embedded migration %s: %w", e.Name(), err)
		}
		content, err := renderTemplate("migration.sql.tmpl", map[string]string{
			"Name": e.Name(),
			"SQL":  strings.TrimRight(string(sql), "\n"),
		})
		if err != nil {
			return nil, err
		}
		files = append(files, plannedFile{path: path.Join(folder, e.Name()), content: content})
	}
	if len(files) == 0 {
		return nil, errors.New("no embedded migrations found")
	}
	return files, nil
}

// renderTemplate executes templates/<name> from esgen.Templates.
func renderTemplate(name string, data any) ([]byte, error) {
	t, err := template.New(name).Option("missingkey=error").ParseFS(esgen.Templates, "templates/"+name)
	if err != nil {
		return nil, fmt.Errorf("parse template %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("render template %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// staleWarnings names generated files the spec or esgen no longer produces: projection
// packages and projector mains of removed projections, and migrations esgen dropped.
// They are not deleted.
func staleWarnings(dir string, spec *Spec, migrations []plannedFile) []string {
	known := map[string]bool{}
	for _, pr := range spec.Projections {
		known[pr.Name] = true
	}
	var warnings []string
	check := func(rel string) {
		src, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if err == nil && bytes.Contains(src, []byte(generatedHeader)) {
			warnings = append(warnings, fmt.Sprintf("%s: projection is no longer in %s; delete the file if you no longer need it", rel, specBase(spec)))
		}
	}
	if entries, err := os.ReadDir(filepath.Join(dir, filepath.FromSlash(spec.Output.Projections))); err == nil {
		for _, e := range entries {
			if e.IsDir() && !known[e.Name()] {
				check(path.Join(spec.Output.Projections, e.Name(), "projection.go"))
			}
		}
	}
	current := map[string]bool{}
	for _, m := range migrations {
		current[m.path] = true
	}
	if entries, err := os.ReadDir(filepath.Join(dir, filepath.FromSlash(spec.Output.Migrations))); err == nil {
		for _, e := range entries {
			rel := path.Join(spec.Output.Migrations, e.Name())
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".sql") && !current[rel] {
				src, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
				if err == nil && bytes.HasPrefix(src, []byte("-- "+generatedHeader)) {
					warnings = append(warnings, fmt.Sprintf("%s: esgen no longer has this migration; delete the file if it is applied everywhere", rel))
				}
			}
		}
	}
	if entries, err := os.ReadDir(filepath.Join(dir, filepath.FromSlash(spec.Output.Cmd))); err == nil {
		for _, e := range entries {
			if name, ok := strings.CutSuffix(e.Name(), "-projector"); ok && e.IsDir() && !known[name] {
				check(path.Join(spec.Output.Cmd, e.Name(), "main.go"))
			}
		}
	}
	return warnings
}

// ModulePath returns the module path of the nearest go.mod at or above dir, joined
// with dir's path inside that module.
func ModulePath(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("find go.mod: %w", err)
	}
	for d := abs; ; d = filepath.Dir(d) {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil {
			mod := moduleLine(data)
			if mod == "" {
				return "", fmt.Errorf("%s: no module line", filepath.Join(d, "go.mod"))
			}
			rel, err := filepath.Rel(d, abs)
			if err != nil {
				return "", fmt.Errorf("find go.mod: %w", err)
			}
			return importPath(mod, filepath.ToSlash(rel)), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("read go.mod: %w", err)
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod found at or above %s: run `go mod init` first", abs)
		}
	}
}

func moduleLine(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			rest, _, _ = strings.Cut(rest, "//")
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
