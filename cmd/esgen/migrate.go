package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/migrate"
)

func init() {
	register("migrate", "apply esgen's migrations to DATABASE_URL", runMigrate)
}

// databaseFlag adds --database, defaulting to DATABASE_URL.
func databaseFlag(fs *flag.FlagSet) *string {
	return fs.String("database", os.Getenv("DATABASE_URL"), "PostgreSQL connection URL (default: $DATABASE_URL)")
}

func needDatabase(url string) error {
	if url == "" {
		return usageError{fmt.Errorf("no database: set DATABASE_URL or pass --database=postgres://user@host:5432/db")}
	}
	return nil
}

// connect opens the command's connection, or says how to name a database.
func connect(ctx context.Context, url string) (*pgx.Conn, error) {
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
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := databaseFlag(fs)
	dryRun := fs.Bool("dry-run", false, "print the SQL of the pending migrations (all of them without a database) and apply nothing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	all := migrate.All()
	if *dryRun && *db == "" {
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
