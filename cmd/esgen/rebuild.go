package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projection"
)

func init() {
	register("rebuild", "replay a projection from the start, its read model cleared (--yes to confirm)", runRebuild)
}

func runRebuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: esgen rebuild <projection> --yes [--no-wait] [--database=URL]")
		fmt.Fprintln(stderr, "       esgen rebuild <projection> --watch")
		fmt.Fprintln(stderr, "\nReplays a projection from the start of the stream. It deletes the projection's")
		fmt.Fprintln(stderr, "checkpoints and starts a new generation: its running workers stop at their next batch.")
		fmt.Fprintln(stderr, "The next projector started (or restarted) clears the read model with the handlers'")
		fmt.Fprintln(stderr, "Reset, in the transaction that puts the checkpoints at the start, and handles every")
		fmt.Fprintln(stderr, "event again. esgen rebuild then shows the progress until the rebuild has caught up;")
		fmt.Fprintln(stderr, "Ctrl+C stops watching, not the rebuild. Stopping the projector interrupts the rebuild,")
		fmt.Fprintln(stderr, "starting it again resumes it.")
		fs.PrintDefaults()
	}
	db := databaseFlag(fs)
	yes := fs.Bool("yes", false, "confirm: request the rebuild")
	watch := fs.Bool("watch", false, "only show the progress of the projection's rebuild")
	noWait := fs.Bool("no-wait", false, "request the rebuild and return")
	interval := fs.Duration("interval", time.Second, "how often the progress is shown")
	names, err := parseNamed(fs, args)
	if err != nil {
		return err
	}
	if len(names) != 1 {
		return usageError{errors.New("name exactly one projection: esgen rebuild <projection> --yes")}
	}
	name := names[0]
	if *interval <= 0 {
		return usageError{fmt.Errorf("--interval=%s: use a positive duration", *interval)}
	}
	if !*yes && !*watch {
		return usageError{fmt.Errorf("refusing without --yes: this stops the workers of projection %s and, when its projector starts again, clears its read model (the handlers' Reset) and handles every event again. Run: esgen rebuild %s --yes", name, name)}
	}
	conn, err := connect(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if !*watch {
		gen, err := projection.RequestRebuild(ctx, conn, name)
		if errors.Is(err, projection.ErrNotFound) {
			return fmt.Errorf("no projection %q: nothing to rebuild (a projection builds from the start when it first runs)", name)
		}
		if err != nil {
			return eventstore.MissingTables(err)
		}
		fmt.Fprintf(stdout, "esgen rebuild: requested a rebuild of projection %s (generation %d): its running workers stop at their next batch; the next projector started clears the read model (Reset) and replays every event\n", name, gen)
		if *noWait {
			return nil
		}
	}
	return watchRebuild(ctx, conn, name, *interval, stdout)
}

// parseNamed parses fs's flags, which may come before or after the names it returns.
func parseNamed(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var names []string
	for fs.NArg() > 0 {
		names = append(names, fs.Arg(0))
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// watchRebuild shows the progress of the projection's rebuild, a line whenever it
// changes, until it has caught up or ctx ends.
func watchRebuild(ctx context.Context, db projection.DBTX, name string, interval time.Duration, stdout io.Writer) error {
	last := ""
	for {
		st, err := projection.Status(ctx, db, name)
		if ctx.Err() != nil {
			fmt.Fprintf(stdout, "esgen rebuild: stopped watching; the rebuild goes on in the projector (esgen rebuild %s --watch, or esgen status, shows it)\n", name)
			return nil
		}
		if errors.Is(err, projection.ErrNotFound) {
			return fmt.Errorf("no projection %q", name)
		}
		if err != nil {
			return eventstore.MissingTables(err)
		}
		if st.Rebuild == nil {
			return fmt.Errorf("projection %s has no rebuild: request one with esgen rebuild %s --yes", name, name)
		}
		line := "esgen rebuild: " + name + ": " + rebuildProgress(*st.Rebuild, time.Now())
		if line != last {
			fmt.Fprintln(stdout, line)
			last = line
		}
		if st.Rebuild.CaughtUp {
			return nil
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// rebuildProgress says where a rebuild is: waiting for a projector, events done of
// the total with rate and ETA, or caught up.
func rebuildProgress(r projection.RebuildStatus, now time.Time) string {
	if r.Pending() {
		return fmt.Sprintf("generation %d, requested %s: waiting for a projector to start it (start or restart the projector)", r.Generation, ago(r.RequestedAt, now))
	}
	if r.CaughtUp {
		return fmt.Sprintf("generation %d: caught up, %d events since %s (%.0f events/s)", r.Generation, r.Done, r.StartedAt.UTC().Format(time.RFC3339), r.Rate)
	}
	pct := 100.0
	if r.Total > 0 {
		pct = 100 * float64(r.Done) / float64(r.Total)
	}
	eta := "unknown"
	if r.ETA > 0 {
		eta = r.ETA.Round(time.Second).String()
	}
	return fmt.Sprintf("generation %d: %d/%d events (%.0f%%), %.0f events/s, ETA %s", r.Generation, r.Done, r.Total, pct, r.Rate, eta)
}

// printHistory adds to esgen status what a projection's history holds: its last
// rebuild and the event types whose earlier events it skipped on purpose.
func printHistory(w io.Writer, st projection.ProjectionStatus, now time.Time) {
	if st.Rebuild != nil {
		fmt.Fprintf(w, "  rebuild: %s\n", rebuildProgress(*st.Rebuild, now))
	}
	for _, s := range st.SkippedTypes {
		fmt.Fprintf(w, "  skipped on purpose: %d %s event(s) from before it handled the type were never handled (esgen accept-skip, %s)\n",
			s.Skipped, s.Type, s.AcceptedAt.UTC().Format(time.RFC3339))
	}
}
