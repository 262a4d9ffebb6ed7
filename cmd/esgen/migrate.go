package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/gen"
	"github.com/esgen-dev/esgen/migrate"
)

func init() {
	register("migrate", "apply esgen's migrations and the module's to DATABASE_URL", runMigrate)
}

func needDatabase(url string) error {
	if url == "" {
		return usageError{fmt.Errorf("no database: set DATABASE_URL or pass --database=postgres://user@host:5432/db")}
	}
	return nil
}

// connect opens the command's connection to the --database value (or DATABASE_URL),
// or says how to name a database.
func connect(ctx context.Context, url string) (*pgx.Conn, error) {
	url = databaseURL(url)
	if err := needDatabase(url); err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return conn, nil
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("migrate", `usage: esgen migrate [--dry-run] [--database=URL] [-C dir] [-f esgen.yaml]

Applies esgen's migrations, then the module's own (the files numbered 100 and up
in the migrations folder of esgen.yaml, e.g. sql/migrations/100_balances.sql), in
order, each recorded in esgen_schema_migrations, all in one transaction.`, stdout)
	db := databaseFlag(fs)
	dryRun := fs.Bool("dry-run", false, "print the SQL of the pending migrations (all of them without a database) and apply nothing")
	dir := fs.String("C", ".", "the module folder holding esgen.yaml")
	specFile := fs.String("f", "esgen.yaml", "the spec, whose output.migrations folder holds the module's migrations (relative to -C)")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	module, err := moduleMigrations(*dir, *specFile, stderr)
	if err != nil {
		return err
	}
	all := append(migrate.All(), module...)
	if *dryRun && databaseURL(*db) == "" {
		for _, m := range all {
			fmt.Fprintf(stdout, "-- %s\n%s\n", m.Name, m.SQL)
		}
		return nil
	}
	conn, err := connect(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if *dryRun {
		applied, err := migrate.Applied(ctx, conn)
		if err != nil {
			return err
		}
		for _, m := range all {
			if !applied[m.Version] {
				fmt.Fprintf(stdout, "-- %s\n%s\n", m.Name, m.SQL)
			}
		}
		return nil
	}
	done, err := migrate.Up(ctx, conn, all)
	if err != nil {
		return err
	}
	if len(done) == 0 {
		fmt.Fprintln(stdout, "esgen migrate: up to date")
	}
	for _, m := range done {
		fmt.Fprintf(stdout, "esgen migrate: applied %s\n", m.Name)
	}
	return nil
}

// moduleMigrations reads the module's own migrations from the migrations folder its
// spec names. Without a spec there are none, and a note says so.
func moduleMigrations(dir, specFile string, stderr io.Writer) ([]migrate.Migration, error) {
	if !filepath.IsAbs(specFile) {
		specFile = filepath.Join(dir, specFile)
	}
	spec, err := gen.Load(specFile)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stderr, "esgen migrate: no %s: applying esgen's migrations only\n", specFile)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return migrate.LoadModule(os.DirFS(filepath.Dir(specFile)), spec.Output.Migrations)
}
