package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/esgen-dev/esgen/gen"
)

// runGenerate implements `esgen generate [-f esgen.yaml] [-C dir]`.
func runGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("generate", `usage: esgen generate [-f esgen.yaml] [-C dir]

Generates migrations, typed events, projection handlers, projector mains and
handler stubs from the spec. Output folders are relative to -C (default: the
spec's folder). Nothing is written when the spec has mistakes. With sqlc: true in the
spec it then runs `+"`go tool sqlc generate`"+` for the module's read-model queries.`, stdout)
	specFile := fs.String("f", "esgen.yaml", "the spec file (relative to -C)")
	dir := fs.String("C", "", "the folder to generate into (default: the spec's folder)")
	noSqlc := fs.Bool("no-sqlc", false, "with sqlc: true in the spec, do not run go tool sqlc generate afterwards")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	res, err := gen.Generate(gen.Options{Dir: *dir, Spec: *specFile})
	var list gen.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(stderr, e)
		}
		plural := "s"
		if len(list) == 1 {
			plural = ""
		}
		return fmt.Errorf("%d mistake%s in %s; nothing written", len(list), plural, list[0].File)
	}
	if res != nil {
		for _, f := range res.Files {
			if f.Detail != "" {
				fmt.Fprintf(stdout, "%-9s %s (%s)\n", f.Action, f.Path, f.Detail)
			} else {
				fmt.Fprintf(stdout, "%-9s %s\n", f.Action, f.Path)
			}
		}
		for _, w := range res.Warnings {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
	}
	if err != nil || res.SqlcConfig == "" || *noSqlc {
		return err
	}
	if err := gen.RunSqlc(ctx, res.SqlcConfig, stdout, stderr); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "sqlc      generated the read-model queries")
	return nil
}
