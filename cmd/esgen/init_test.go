package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/esgen-dev/esgen/gen"
)

func TestInitNewFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bank")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := runCmd(t, initCmd, "-C", dir)
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	for _, f := range []string{"go.mod", "esgen.yaml", "generate.go"} {
		if !strings.Contains(stdout, "created   "+f+"\n") {
			t.Errorf("output does not report %s:\n%s", f, stdout)
		}
	}
	if got := readFile(t, filepath.Join(dir, "go.mod")); !strings.HasPrefix(got, "module bank\n") {
		t.Errorf("go.mod = %q", got)
	}
	g := readFile(t, filepath.Join(dir, "generate.go"))
	if !strings.HasPrefix(g, "package bank\n") || !strings.Contains(g, "\n//go:generate go tool esgen generate\n") {
		t.Errorf("generate.go:\n%s", g)
	}
	// The next steps, in the order that works: esgen as a tool (a new go.mod has
	// none), generate, fill in, migrate, build.
	order := []string{"go get -tool github.com/esgen-dev/esgen/cmd/esgen", "go generate ./...", "fill in projections/<name>/handlers.go",
		"go tool esgen migrate", "go build ./cmd/<name>-projector"}
	last := -1
	for _, step := range order {
		i := strings.Index(stdout, step)
		if i <= last {
			t.Errorf("next steps lack %q or give it out of order:\n%s", step, stdout)
		}
		last = i
	}
	if _, err := gen.Load(filepath.Join(dir, "esgen.yaml")); err != nil {
		t.Errorf("the starter esgen.yaml does not load: %v", err)
	}
}

func TestInitExistingModuleKeepsItsPackageAndFiles(t *testing.T) {
	dir := t.TempDir()
	gomod := "module example.com/shop\n\ngo 1.26\n\ntool github.com/esgen-dev/esgen/cmd/esgen\n"
	writeFile(t, filepath.Join(dir, "go.mod"), gomod)
	writeFile(t, filepath.Join(dir, "generate.go"), "package shop\n\n//go:generate echo other\n")
	stdout, _, err := runCmd(t, initCmd, "-C", dir)
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	if strings.Contains(stdout, "go get -tool") || !strings.Contains(stdout, "go generate ./...") {
		t.Errorf("with esgen a tool of the module already, the next steps should not add it:\n%s", stdout)
	}
	if got := readFile(t, filepath.Join(dir, "go.mod")); got != gomod {
		t.Errorf("init changed go.mod: %q", got)
	}
	if got := readFile(t, filepath.Join(dir, "generate.go")); got != "package shop\n\n//go:generate echo other\n" {
		t.Errorf("init changed generate.go: %q", got)
	}
	g := readFile(t, filepath.Join(dir, "esgen_generate.go"))
	if !strings.HasPrefix(g, "package shop\n") || !strings.Contains(g, "//go:generate go tool esgen generate") {
		t.Errorf("esgen_generate.go:\n%s", g)
	}
}

func TestInitNeverOverwritesSpec(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "go.mod"), "module example.com/x\n")
	writeFile(t, filepath.Join(dir, "esgen.yaml"), "version: 1\n# mine\n")
	_, _, err := runCmd(t, initCmd, "-C", dir)
	if !errors.Is(err, gen.ErrSpecExists) {
		t.Fatalf("init over an existing esgen.yaml: %v, want ErrSpecExists", err)
	}
	if !strings.Contains(err.Error(), "never overwrites") {
		t.Errorf("error does not say so: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "esgen.yaml")); got != "version: 1\n# mine\n" {
		t.Errorf("esgen.yaml changed: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "generate.go")); err == nil {
		t.Error("init wrote generate.go although it refused")
	}
}
