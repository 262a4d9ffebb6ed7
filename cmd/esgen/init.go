package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/esgen-dev/esgen/gen"
)

// runInit implements `esgen init [-C dir] [-module path]`.
func runInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("init", `usage: esgen init [-C dir] [-module path]

Writes a commented starter esgen.yaml and a generate.go with the go:generate
line (and a go.mod when the folder is in no module). Never overwrites esgen.yaml.`, stdout)
	dir := fs.String("C", ".", "the folder to write into")
	module := fs.String("module", "", "module path for a new go.mod (default: the folder's name)")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	res, err := gen.Init(gen.InitOptions{Dir: *dir, Module: *module})
	if res != nil {
		for _, f := range res.Files {
			fmt.Fprintf(stdout, "%-9s %s\n", f.Action, f.Path)
		}
	}
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, gen.NextSteps(abs))
	return nil
}
