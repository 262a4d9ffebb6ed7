package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/internal/pgtest"
)

func init() {
	register("devdb", "run a throw-away PostgreSQL and print its DATABASE_URL (until Ctrl+C)", runDevDB)
}

var dbNamePattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// runDevDB starts a private PostgreSQL cluster in a temporary directory (from the
// server binaries on the machine, as "nobody" when run as root), creates an empty
// database in it, prints `export DATABASE_URL=…` on stdout and waits until ctx ends
// (Ctrl+C or SIGTERM); then it stops the server and removes the directory. With
// DATABASE_URL already set (and no -private), it only checks that the database answers
// and prints the same line.
func runDevDB(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("devdb", `usage: esgen devdb [-name db] [-private]

Starts a throw-away PostgreSQL for development, prints `+"`export DATABASE_URL=...`"+`
and keeps it running until Ctrl+C, then removes it. Nothing is applied to the
database: run the migrations yourself (psql -f or esgen migrate). With DATABASE_URL
set (and no -private), it only checks that the database answers.`, stdout)
	name := fs.String("name", "esgen_dev", "name of the database to create")
	private := fs.Bool("private", false, "start a throw-away server even when DATABASE_URL is set")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if !dbNamePattern.MatchString(*name) {
		return usageError{fmt.Errorf("-name %q: use lower-case letters, digits and underscores", *name)}
	}

	if u := os.Getenv("DATABASE_URL"); u != "" && !*private {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(cctx, u)
		if err != nil {
			return fmt.Errorf("DATABASE_URL is set but does not answer: %w (unset it to get a throw-away server)", err)
		}
		conn.Close(context.WithoutCancel(ctx))
		if hasPassword(u) {
			// Never print a password: the shell has the variable already.
			fmt.Fprintf(stderr, "esgen devdb: DATABASE_URL (%s) is set and answers; use it (or pass -private for a throw-away server)\n", redact(u))
			return nil
		}
		fmt.Fprintln(stderr, "esgen devdb: DATABASE_URL is set and answers; use it (or pass -private for a throw-away server)")
		fmt.Fprintf(stdout, "export DATABASE_URL=%s\n", shellQuote(u))
		return nil
	}

	start := time.Now()
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	srv, err := pgtest.StartPrivate(startCtx, pgtest.Options{})
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted while starting PostgreSQL")
		}
		return err
	}
	defer func() {
		if err := srv.Stop(); err != nil {
			fmt.Fprintf(stderr, "esgen devdb: %v\n", err)
			return
		}
		fmt.Fprintf(stderr, "esgen devdb: stopped PostgreSQL and removed %s\n", srv.Dir())
	}()
	createCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	url, err := srv.CreateDatabase(createCtx, *name)
	cancel()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "esgen devdb: PostgreSQL is running in %s (started in %s); database %s is empty.\n",
		srv.Dir(), time.Since(start).Round(10*time.Millisecond), *name)
	fmt.Fprintln(stderr, "esgen devdb: run the line below in other terminals; press Ctrl+C here to stop and remove everything.")
	fmt.Fprintf(stdout, "export DATABASE_URL=%s\n", shellQuote(url))
	<-ctx.Done()
	fmt.Fprintln(stderr, "esgen devdb: stopping")
	return nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, `'\''`...)
			continue
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}
