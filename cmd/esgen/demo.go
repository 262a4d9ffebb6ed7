package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/esgen-dev/esgen/internal/demo"
)

func init() {
	register("demo", "run the partitioned demo end to end (no setup needed)", runDemo)
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", `usage: esgen demo [flags]

Runs the partitioned demo end to end: a throw-away PostgreSQL (or --database),
writers appending concurrently, one projector process per partition, and a check
that every event was handled exactly once.`, stdout)
	db := fs.String("database", "", "PostgreSQL URL; the demo works in schema "+demo.Schema+" (default: $DATABASE_URL, else a throw-away server)")
	partitions := fs.Int("partitions", 4, "worker processes, one partition each")
	accounts := fs.Int("accounts", 300, "accounts (aggregates)")
	events := fs.Int("events", 3000, "events to append")
	writers := fs.Int("writers", 8, "concurrent writers")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up when the workers have not caught up by then")
	show := fs.Int("show-events", 3, "per-event log lines shown per worker")
	projector := fs.String("projector", "", "the workers' binary, built from internal/demo/cmd/balances-projector (default: go build it from esgen's source)")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	_, err := demo.Run(ctx, demo.Options{
		DatabaseURL: databaseURL(*db),
		Partitions:  *partitions,
		Accounts:    *accounts,
		Events:      *events,
		Writers:     *writers,
		Timeout:     *timeout,
		ShowEvents:  *show,
		Projector:   *projector,
		Stdout:      stdout,
		Stderr:      stderr,
	})
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("interrupted; the writers, workers and server it started are stopped")
	}
	return err
}
