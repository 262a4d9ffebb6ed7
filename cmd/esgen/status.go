package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projection"
)

func init() {
	register("status", "checkpoints, stream head, lag, skips and rebuilds per projection", runStatus)
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", `usage: esgen status [--json] [--database=URL] [projection]

Shows, per projection: its partition count and generation, any change of the count
still being carried over, per partition the checkpoint (transaction/position), its
holes, events handled, lag in events behind the stream head and when the checkpoint
last moved, and with automatic assignment (PARTITION_KEY=auto) which worker holds it,
since when and until when its lease runs; the registered workers; the poison events
skipped (esgen skip) with who, when and why; the last
rebuild (esgen rebuild) and its progress; and the event types whose earlier events
it skipped on purpose (esgen accept-skip), with how many.`, stdout)
	db := databaseFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := fs.parse(args); err != nil {
		return err
	}
	name := ""
	switch rest := fs.Args(); len(rest) {
	case 0:
	case 1:
		name = rest[0]
	default:
		return usageError{fmt.Errorf("unexpected arguments %q: name at most one projection", rest[1:])}
	}
	conn, err := connect(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var all []projection.ProjectionStatus
	skipped, err := projection.Skipped(ctx, conn, name)
	if err != nil && !errors.Is(err, eventstore.ErrTablesMissing) {
		return err
	}
	if name != "" {
		st, err := projection.Status(ctx, conn, name)
		if errors.Is(err, projection.ErrNotFound) {
			return fmt.Errorf("no projection %q: it appears once its first worker has started", name)
		}
		if err != nil {
			return eventstore.MissingTables(err)
		}
		all = []projection.ProjectionStatus{st}
	} else if all, err = projection.StatusAll(ctx, conn); err != nil {
		return eventstore.MissingTables(err)
	}
	if *asJSON {
		if all == nil {
			all = []projection.ProjectionStatus{}
		}
		if skipped == nil {
			skipped = []projection.SkippedEvent{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"projections": all, "skipped_events": skipped})
	}
	if len(all) == 0 {
		fmt.Fprintln(stdout, "no projections yet: a projection appears once its first worker has started")
		return nil
	}
	now := time.Now()
	for i, st := range all {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		printStatus(stdout, st, now)
		var mine []projection.SkippedEvent
		for _, sk := range skipped {
			if sk.Projection == st.Name {
				mine = append(mine, sk)
			}
		}
		printSkipped(stdout, mine, now)
	}
	return nil
}

// printSkipped lists the poison events skipped on purpose in a projection (esgen skip).
func printSkipped(w io.Writer, skipped []projection.SkippedEvent, now time.Time) {
	if len(skipped) == 0 {
		return
	}
	fmt.Fprintf(w, "  skipped poison events (esgen skip): %d\n", len(skipped))
	for _, s := range skipped {
		passed := "not passed yet"
		if s.Passed() {
			passed = fmt.Sprintf("passed in partition %d/%d at %s", s.PassedPartition, s.PassedCount, ago(s.PassedAt, now))
		}
		fmt.Fprintf(w, "    %s  %s of %s %s at %s; skipped by %s at %s: %s; %s\n", s.EventID, s.EventType, s.AggregateType, s.AggregateID,
			s.Position, s.SkippedBy, ago(s.SkippedAt, now), s.Reason, passed)
	}
}

func printStatus(w io.Writer, st projection.ProjectionStatus, now time.Time) {
	counts := make([]string, len(st.CountsUsed))
	for i, c := range st.CountsUsed {
		counts[i] = fmt.Sprint(c)
	}
	fmt.Fprintf(w, "projection %s: %d partition(s), generation %d (counts used: %s), stream head %d, lag %d\n",
		st.Name, st.PartitionCount, st.Generation, strings.Join(counts, " → "), st.Head, st.Lag)
	if st.Rescaling() {
		fmt.Fprintf(w, "  changing the partition count from %d to %d since %s: %d checkpoint(s) of earlier layouts still carried over\n",
			st.PreviousCount, st.PartitionCount, ago(st.ChangedAt, now), len(st.Retired))
	}
	leases := false
	for _, p := range st.Partitions {
		leases = leases || p.Lease != nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if leases {
		fmt.Fprintln(tw, "  PARTITION\tCHECKPOINT\tHOLES\tHANDLED\tLAG\tLAST MOVED\tHOLDER\tSINCE\tLEASE EXPIRES\t")
	} else {
		fmt.Fprintln(tw, "  PARTITION\tCHECKPOINT\tHOLES\tHANDLED\tLAG\tLAST MOVED\t")
	}
	row := func(p projection.PartitionStatus, lag string) {
		fmt.Fprintf(tw, "  %d/%d\t%s\t%s\t%d\t%s\t%s\t", p.Key, p.Count, p.Checkpoint.Position, holes(p.Checkpoint),
			p.EventsHandled, lag, ago(p.LastMoved, now))
		if leases {
			holder, since, expires := "-", "-", "-"
			if l := p.Lease; l != nil && l.Owner != "" {
				holder, since = l.Owner, ago(l.Since, now)
				expires = until(l.Expires, now)
				if !l.Live {
					holder += " (expired)"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t", holder, since, expires)
		}
		fmt.Fprintln(tw)
	}
	for _, p := range st.Partitions {
		row(p, fmt.Sprint(p.Lag))
	}
	for _, p := range st.Retired {
		row(p, fmt.Sprintf("retired (generation %d)", p.Generation))
	}
	tw.Flush()
	printWorkers(w, st.Workers, now)
	printHistory(w, st, now) // rebuild.go
}

// printWorkers lists the registered workers: auto-assigned ones with how many
// partitions they hold, static ones with their keys.
func printWorkers(w io.Writer, workers []projection.WorkerStatus, now time.Time) {
	if len(workers) == 0 {
		return
	}
	fmt.Fprintf(w, "  workers: %d registered\n", len(workers))
	for _, wk := range workers {
		state := "live, heartbeat " + ago(wk.Heartbeat, now)
		if !wk.Live {
			state = "gone (no heartbeat since " + ago(wk.Heartbeat, now) + ")"
		}
		keys := ""
		if wk.Mode == "static" {
			ks := make([]string, len(wk.Partitions))
			for i, k := range wk.Partitions {
				ks[i] = fmt.Sprint(k)
			}
			keys = " keys " + strings.Join(ks, ",")
		}
		fmt.Fprintf(w, "    %s  %s%s, started %s, %s\n", wk.ID, wk.Mode, keys, ago(wk.Started, now), state)
	}
}

// until shows a time ahead as "… (in 4s)", or as ago when it has passed.
func until(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if d := t.Sub(now); d > 0 {
		return fmt.Sprintf("%s (in %s)", t.UTC().Format(time.RFC3339), d.Round(time.Second))
	}
	return ago(t, now)
}

// holes says how many transactions a checkpoint passed while they were running (whose
// later events it handles when they end), and the oldest as transaction/position, as
// the logs print holes: "-" for none, "2 (oldest 805/0)".
func holes(c eventstore.Cursor) string {
	if len(c.Holes) == 0 {
		return "-"
	}
	return fmt.Sprintf("%d (oldest %d/%d)", len(c.Holes), c.Holes[0].TransactionID, c.Holes[0].Position)
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), d.Round(time.Second))
}
