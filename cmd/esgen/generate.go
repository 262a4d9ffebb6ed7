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
	fs := newFlags("generate", `usage: esgen generate [-f esgen.yaml] [-C dir] [--no-sqlc] [--accept-breaking]

Generates migrations, typed events, projection handlers, projector mains and
handler stubs from the spec. Output folders are relative to -C (default: the
spec's folder). Nothing is written when the spec has mistakes. With sqlc: true in the
spec it then runs `+"`go tool sqlc generate`"+` for the module's read-model queries.
The lock beside the spec (esgen.lock.json) records the published event schemas:
a change that would break stored events is refused unless --accept-breaking.`, stdout)
	specFile := fs.String("f", "esgen.yaml", "the spec file (relative to -C)")
	dir := fs.String("C", "", "the folder to generate into (default: the spec's folder)")
	noSqlc := fs.Bool("no-sqlc", false, "with sqlc: true in the spec, do not run go tool sqlc generate afterwards")
	acceptBreaking := fs.Bool("accept-breaking", false, "write even when the spec breaks published event schemas (esgen.lock.json), and publish the new ones")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	res, err := gen.Generate(gen.Options{Dir: *dir, Spec: *specFile, AcceptBreaking: *acceptBreaking})
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
		printBreaking(stderr, res.Breaking)
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

// printBreaking says, loudly, which breaking changes --accept-breaking let through.
func printBreaking(w io.Writer, breaking []string) {
	if len(breaking) == 0 {
		return
	}
	fmt.Fprintf(w, "WARNING: --accept-breaking: %d breaking change(s) to published event schemas accepted on purpose:\n", len(breaking))
	for _, b := range breaking {
		fmt.Fprintf(w, "  %s\n", b)
	}
	fmt.Fprintln(w, "WARNING: stored events of these versions may no longer decode, or decode with empty fields; the lock now publishes the new schemas")
}
