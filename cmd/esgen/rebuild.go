package main

import (
	"context"
	"errors"
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
	fs := newFlags("rebuild", `usage: esgen rebuild <projection> --yes [--no-wait] [--interval=1s] [--database=URL]
       esgen rebuild <projection> --watch

Replays a projection from the start of the stream. It deletes the projection's
checkpoints and starts a new generation: its running workers stop at their next batch.
The next projector started (or restarted) clears the read model with the handlers'
Reset, in the transaction that puts the checkpoints at the start, and handles every
event again. esgen rebuild then shows the progress until the rebuild has caught up;
Ctrl+C stops watching, not the rebuild. Stopping the projector interrupts the rebuild,
starting it again resumes it. The partition count stays as it is; events skipped on
purpose (esgen skip) stay skipped.`, stdout)
	db := databaseFlag(fs)
	yes := fs.Bool("yes", false, "confirm: request the rebuild")
	watch := fs.Bool("watch", false, "only show the progress of the projection's rebuild")
	noWait := fs.Bool("no-wait", false, "request the rebuild and return")
	interval := fs.Duration("interval", time.Second, "how often the progress is shown")
	names, err := fs.parseInterspersed(args)
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
		fmt.Fprintf(w, "  event type skipped on purpose (esgen accept-skip): %d %s event(s) from before it handled the type were never handled (accepted %s)\n",
			s.Skipped, s.Type, s.AcceptedAt.UTC().Format(time.RFC3339))
	}
}
