package projection_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
	"github.com/esgen-dev/esgen/projection"
)

// historyDB returns a migrated database with the read model of the history tests:
// one row per handled event, by id.
func historyDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := newPool(t, pgtest.NewDatabase(t))
	if _, err := pool.Exec(context.Background(), `CREATE TABLE hist_rm (event_id uuid PRIMARY KEY, event_type text NOT NULL, aggregate_id text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return pool
}

// appendTyped appends one event of each type to a new aggregate prefix-i (the i-th
// type), and waits until a commit-safe reader sees every event of the store.
func appendTyped(t *testing.T, pool *pgxpool.Pool, prefix string, types ...string) {
	t.Helper()
	for i, typ := range types {
		_, err := eventstore.Append(context.Background(), pool, "Order", fmt.Sprintf("%s-%d", prefix, i), eventstore.NoStream,
			eventstore.EventData{Type: typ, Payload: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
	}
	total := count(t, pool, "SELECT count(*) FROM esgen_events")
	waitFor(t, time.Minute, "appended events to become visible", func() bool {
		evs, err := eventstore.ReadAll(context.Background(), pool, eventstore.ReadOptions{Limit: int(total) + 1})
		return err == nil && int64(len(evs)) == total
	})
}

// histProjection is a projection of types into hist_rm, whose Reset truncates it
// and counts its calls; delay slows each event down.
func histProjection(name string, resets *atomic.Int64, delay time.Duration, types ...string) projection.Projection {
	return projection.Projection{
		Name: name, EventTypes: types, Partitioned: true,
		Handler: projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
			time.Sleep(delay)
			_, err := tx.Exec(ctx, `INSERT INTO hist_rm (event_id, event_type, aggregate_id) VALUES ($1, $2, $3)`, ev.EventID, ev.Type, ev.AggregateID)
			return err
		}),
		Reset: func(ctx context.Context, tx pgx.Tx) error {
			resets.Add(1)
			_, err := tx.Exec(ctx, `TRUNCATE hist_rm`)
			return err
		},
	}
}

// runUntil runs p until hist_rm holds want events (of any type) and every checkpoint
// of p has reached the head of the stream, then stops it.
func runUntil(t *testing.T, pool *pgxpool.Pool, p projection.Projection, cfg projection.Config, want int64) {
	t.Helper()
	r := start(t, pool, p, cfg)
	waitFor(t, time.Minute, fmt.Sprintf("%d events in the read model, and %s at the head", want, p.Name), func() bool {
		select {
		case err := <-r.done:
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		return count(t, pool, "SELECT count(*) FROM hist_rm") == want &&
			count(t, pool, `SELECT count(*) FROM esgen_checkpoints WHERE projection = $1 AND NOT retired
				AND last_position >= (SELECT max(global_position) FROM esgen_events)`, p.Name) == int64(max(cfg.TotalPartitions, 1))
	})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

func handled(t *testing.T, pool *pgxpool.Pool, typ string) int64 {
	t.Helper()
	return count(t, pool, "SELECT count(*) FROM hist_rm WHERE event_type = $1", typ)
}

// A projection that starts handling a type with events behind its checkpoints does
// not start: it names the type and the count. A rebuild then includes the old events;
// on another projection, an accepted skip does not, and Status says so.
func TestNewlyHandledTypeWithHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := historyDB(t)
	log, logs := testLogger(t)
	cfg := projection.Config{TotalPartitions: 2, Logger: log}
	var resets atomic.Int64
	appendTyped(t, pool, "a", "Placed", "Shipped", "Placed", "Shipped", "Shipped", "Cancelled")

	runUntil(t, pool, histProjection("orders", &resets, 0, "Placed"), cfg, 2)

	// Shipped is new, with 3 events behind the checkpoints: Run refuses.
	err := projection.Run(ctx, pool, histProjection("orders", &resets, 0, "Placed", "Shipped"), cfg)
	var uh *projection.UnhandledHistoryError
	if !errors.As(err, &uh) || !errors.Is(err, projection.ErrDecisionNeeded) || len(uh.Types) != 1 ||
		uh.Types[0] != (projection.TypeCount{Type: "Shipped", Events: 3}) {
		t.Fatalf("Run with a newly handled type = %v, want an UnhandledHistoryError for 3 Shipped events", err)
	}
	for _, want := range []string{"projection orders now handles Shipped (3 events)", "esgen rebuild orders", "esgen accept-skip orders Shipped"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say %q: %v", want, err)
		}
	}
	if n := handled(t, pool, "Shipped"); n != 0 {
		t.Errorf("the refused run handled %d Shipped events", n)
	}
	// Refused again at the next start: nothing was recorded as handled.
	if err := projection.Run(ctx, pool, histProjection("orders", &resets, 0, "Placed", "Shipped"), cfg); !errors.As(err, &uh) {
		t.Fatalf("second start: %v", err)
	}

	// Rebuild: Reset clears the read model in the transaction that resets the
	// checkpoints; the replay handles the old Shipped events.
	if _, err := projection.RequestRebuild(ctx, pool, "orders"); err != nil {
		t.Fatal(err)
	}
	runUntil(t, pool, histProjection("orders", &resets, 0, "Placed", "Shipped"), cfg, 5)
	if resets.Load() != 1 || handled(t, pool, "Shipped") != 3 || handled(t, pool, "Placed") != 2 {
		t.Errorf("after the rebuild: %d resets, %d Shipped, %d Placed; want 1, 3, 2", resets.Load(), handled(t, pool, "Shipped"), handled(t, pool, "Placed"))
	}
	// A new type without events behind the checkpoints just starts.
	r := start(t, pool, histProjection("orders", &resets, 0, "Placed", "Shipped", "Refunded"), cfg)
	waitFor(t, time.Minute, "the start with a new type without history", func() bool {
		return strings.Contains(logs.String(), `msg="handling new event types; none of their events is behind the checkpoints" projection=orders event_types=[Refunded]`)
	})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	// Another projection of the same events: accept the skip instead.
	if _, err := pool.Exec(ctx, `TRUNCATE hist_rm`); err != nil {
		t.Fatal(err)
	}
	runUntil(t, pool, histProjection("audit", &resets, 0, "Placed"), cfg, 2)
	if _, err := projection.AcceptSkip(ctx, pool, "audit", []string{"Placed"}); err == nil || !strings.Contains(err.Error(), "handles Placed already") {
		t.Errorf("accepting a skip of a handled type: %v", err)
	}
	if _, err := projection.AcceptSkip(ctx, pool, "nope", []string{"Shipped"}); !errors.Is(err, projection.ErrNotFound) {
		t.Errorf("accepting a skip for an unknown projection: %v", err)
	}
	counts, err := projection.AcceptSkip(ctx, pool, "audit", []string{"Shipped"})
	if err != nil || len(counts) != 1 || counts[0] != (projection.TypeCount{Type: "Shipped", Events: 3}) {
		t.Fatalf("AcceptSkip = %v, %v", counts, err)
	}
	appendTyped(t, pool, "b", "Shipped")
	runUntil(t, pool, histProjection("audit", &resets, 0, "Placed", "Shipped"), cfg, 3)
	if n := handled(t, pool, "Shipped"); n != 1 {
		t.Errorf("after the accepted skip the projection handled %d Shipped events, want only the new one", n)
	}
	st, err := projection.Status(ctx, pool, "audit")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.SkippedTypes) != 1 || st.SkippedTypes[0].Type != "Shipped" || st.SkippedTypes[0].Skipped != 3 || st.SkippedTypes[0].AcceptedAt.IsZero() || st.Rebuild != nil {
		t.Errorf("status after the accepted skip: skipped %+v, rebuild %+v", st.SkippedTypes, st.Rebuild)
	}
	if resets.Load() != 1 {
		t.Errorf("%d resets, want the rebuild's only", resets.Load())
	}
}

// A rebuild fences the workers of the old run: they stop with a message saying so,
// and nothing they handle after the request commits. The rebuild's workers, stopped
// halfway and started again, resume without clearing the read model again, and end
// with every event exactly once.
func TestRebuildFencesOldWorkersAndResumes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := historyDB(t)
	log, _ := testLogger(t)
	var resets atomic.Int64
	types := make([]string, 60)
	for i := range types {
		types[i] = "Placed"
	}
	appendTyped(t, pool, "a", types...)

	cfg := projection.Config{TotalPartitions: 2, BatchSize: 5, Logger: log}
	old := start(t, pool, histProjection("orders", &resets, 20*time.Millisecond, "Placed"), cfg)
	waitFor(t, time.Minute, "the old run to handle some events", func() bool { return count(t, pool, "SELECT count(*) FROM hist_rm") >= 10 })
	gen, err := projection.RequestRebuild(ctx, pool, "orders")
	if err != nil {
		t.Fatal(err)
	}
	var rebuiltErr *projection.RebuiltError
	select {
	case err := <-old.done:
		old.done <- err
		if !errors.As(err, &rebuiltErr) || rebuiltErr.Generation != gen || rebuiltErr.Worker != gen-1 ||
			!strings.Contains(err.Error(), "projection orders is being rebuilt (esgen rebuild, generation 2): this worker of generation 1 stopped") {
			t.Fatalf("the old run stopped with %v, want a RebuiltError", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the old run did not stop after the rebuild was requested")
	}
	st, err := projection.Status(ctx, pool, "orders")
	if err != nil || st.Rebuild == nil || !st.Rebuild.Pending() || st.Rebuild.Generation != gen || len(st.Partitions) != 0 {
		t.Fatalf("status of the pending rebuild: %+v, %v", st.Rebuild, err)
	}

	// The rebuild, interrupted after some batches.
	r := start(t, pool, histProjection("orders", &resets, 20*time.Millisecond, "Placed"), cfg)
	waitFor(t, time.Minute, "the rebuild to clear the read model and handle some events", func() bool {
		return resets.Load() == 1 && count(t, pool, "SELECT count(*) FROM hist_rm") >= 10
	})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	mid := count(t, pool, "SELECT count(*) FROM hist_rm")
	st, err = projection.Status(ctx, pool, "orders")
	if err != nil || st.Rebuild == nil || st.Rebuild.Pending() || st.Rebuild.EventsAtStart != 60 || st.Rebuild.Done != mid ||
		st.Rebuild.Total != 60 || (mid < 60 && st.Rebuild.CaughtUp) || st.Rebuild.Rate <= 0 {
		t.Fatalf("status of the interrupted rebuild (%d handled): %+v, %v", mid, st.Rebuild, err)
	}

	// Resumed: no second Reset, every event once.
	runUntil(t, pool, histProjection("orders", &resets, 0, "Placed"), cfg, 60)
	if resets.Load() != 1 {
		t.Errorf("Reset ran %d times, want once", resets.Load())
	}
	if n := count(t, pool, "SELECT count(*) FROM esgen_events e WHERE NOT EXISTS (SELECT 1 FROM hist_rm r WHERE r.event_id = e.event_id)"); n != 0 {
		t.Errorf("%d events missing from the rebuilt read model", n)
	}
	st, err = projection.Status(ctx, pool, "orders")
	if err != nil || !st.Rebuild.CaughtUp || st.Rebuild.Done != 60 || st.Rebuild.ETA != 0 || st.Generation != gen {
		t.Errorf("status after the rebuild: %+v (generation %d), %v", st.Rebuild, st.Generation, err)
	}
}

// Without a Reset hook a requested rebuild does not start; a failing Reset leaves it
// requested, and the read model and checkpoints as they were.
func TestRebuildNeedsAWorkingReset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := historyDB(t)
	log, _ := testLogger(t)
	cfg := projection.Config{Logger: log}
	var resets atomic.Int64
	appendTyped(t, pool, "a", "Placed", "Placed")
	runUntil(t, pool, histProjection("orders", &resets, 0, "Placed"), cfg, 2)
	if _, err := projection.RequestRebuild(ctx, pool, "nope"); !errors.Is(err, projection.ErrNotFound) {
		t.Errorf("rebuild of an unknown projection: %v", err)
	}
	if _, err := projection.RequestRebuild(ctx, pool, "orders"); err != nil {
		t.Fatal(err)
	}

	noReset := histProjection("orders", &resets, 0, "Placed")
	noReset.Reset = nil
	if err := projection.Run(ctx, pool, noReset, cfg); err == nil || !strings.Contains(err.Error(), "no Reset hook") {
		t.Errorf("Run without Reset: %v", err)
	}
	failing := histProjection("orders", &resets, 0, "Placed")
	failing.Reset = func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `TRUNCATE hist_rm`); err != nil {
			return err
		}
		return errors.New("disk full")
	}
	if err := projection.Run(ctx, pool, failing, cfg); err == nil || !strings.Contains(err.Error(), "Reset (clearing the read model) failed; the rebuild stays requested: disk full") {
		t.Errorf("Run with a failing Reset: %v", err)
	}
	st, err := projection.Status(ctx, pool, "orders")
	if err != nil || !st.Rebuild.Pending() || count(t, pool, "SELECT count(*) FROM hist_rm") != 2 {
		t.Fatalf("after the failed Reset: %+v, %v, %d events in the read model", st.Rebuild, err, count(t, pool, "SELECT count(*) FROM hist_rm"))
	}
	r := start(t, pool, histProjection("orders", &resets, 0, "Placed"), cfg)
	waitFor(t, time.Minute, "the rebuild", func() bool {
		return resets.Load() == 1 && count(t, pool, "SELECT count(*) FROM hist_rm") == 2
	})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

// bgProjection writes one row per event into table, a read model of its own.
func bgProjection(name, table string) projection.Projection {
	return projection.Projection{
		Name: name, EventTypes: []string{"Placed"}, Partitioned: true,
		Handler: projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
			_, err := tx.Exec(ctx, `INSERT INTO `+table+` (event_id, aggregate_id) VALUES ($1, $2)`, ev.EventID, ev.AggregateID)
			return err
		}),
		Reset: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `TRUNCATE `+table)
			return err
		},
	}
}

// The blue-green rebuild of docs/projections.md: while writers append and readers
// read through a view, a second projection name (green) builds new tables from the
// start of the stream next to the running one (blue); once green has caught up the
// view switches to it in one statement, and blue is stopped and removed. Readers never
// see a read model being rebuilt (one with fewer events than before the rebuild), and
// green ends with every event once.
func TestBlueGreenRebuild(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t, pgtest.NewDatabase(t))
	if _, err := pool.Exec(ctx, `
		CREATE TABLE bg_blue  (event_id uuid PRIMARY KEY, aggregate_id text NOT NULL);
		CREATE TABLE bg_green (event_id uuid PRIMARY KEY, aggregate_id text NOT NULL, seen_at timestamptz NOT NULL DEFAULT now());
		CREATE VIEW orders_current AS SELECT event_id, aggregate_id FROM bg_blue;`); err != nil {
		t.Fatal(err)
	}
	log, _ := testLogger(t)
	cfg := projection.Config{TotalPartitions: 2, Logger: log}
	types := make([]string, 40)
	for i := range types {
		types[i] = "Placed"
	}
	appendTyped(t, pool, "old", types...)
	blue := start(t, pool, bgProjection("orders", "bg_blue"), cfg)
	waitFor(t, time.Minute, "blue to catch up", func() bool { return count(t, pool, "SELECT count(*) FROM bg_blue") == 40 })

	// Writers and a reader run through the whole procedure.
	wctx, stopWriters := context.WithCancel(ctx)
	written := make(chan int)
	go func() {
		n := 0
		for wctx.Err() == nil {
			if _, err := eventstore.Append(ctx, pool, "Order", fmt.Sprintf("new-%d", n), eventstore.NoStream,
				eventstore.EventData{Type: "Placed", Payload: []byte(`{}`)}); err != nil {
				t.Error(err)
				break
			}
			n++
			time.Sleep(5 * time.Millisecond)
		}
		written <- n
	}()
	rctx, stopReader := context.WithCancel(ctx)
	went := make(chan string, 1)
	go func() {
		for rctx.Err() == nil {
			var n int64
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM orders_current`).Scan(&n); err != nil {
				went <- err.Error()
				return
			}
			if n < 40 {
				went <- fmt.Sprintf("readers saw a read model of %d events, fewer than the 40 from before the rebuild", n)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		went <- ""
	}()

	// Green: a second projection name, its own tables, from the start of the stream.
	green := start(t, pool, bgProjection("orders_v2", "bg_green"), cfg)
	waitFor(t, time.Minute, "green to catch up", func() bool {
		st, err := projection.Status(ctx, pool, "orders_v2")
		return err == nil && st.Lag == 0 && count(t, pool, "SELECT count(*) FROM bg_green") >= count(t, pool, "SELECT count(*) FROM bg_blue")
	})
	// Switch the readers in one statement, then retire blue.
	if _, err := pool.Exec(ctx, `CREATE OR REPLACE VIEW orders_current AS SELECT event_id, aggregate_id FROM bg_green`); err != nil {
		t.Fatal(err)
	}
	if err := blue.stop(t); err != nil {
		t.Fatal(err)
	}
	if err := projection.Reset(ctx, pool, "orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DROP TABLE bg_blue`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the reader reads after the switch too
	stopWriters()
	n := <-written
	stopReader()
	if msg := <-went; msg != "" {
		t.Fatal(msg)
	}
	if n == 0 {
		t.Fatal("the writers appended nothing during the switch")
	}
	waitFor(t, time.Minute, "green to handle the last events", func() bool {
		return count(t, pool, "SELECT count(*) FROM orders_current") == int64(40+n)
	})
	if err := green.stop(t); err != nil {
		t.Fatal(err)
	}
	if missing := count(t, pool, "SELECT count(*) FROM esgen_events e WHERE NOT EXISTS (SELECT 1 FROM orders_current r WHERE r.event_id = e.event_id)"); missing != 0 {
		t.Errorf("%d events missing from the green read model", missing)
	}
	all, err := projection.StatusAll(ctx, pool)
	if err != nil || len(all) != 1 || all[0].Name != "orders_v2" {
		t.Errorf("projections after the switch: %+v, %v", all, err)
	}
}

// A rebuild keeps the partition count: a worker with another count neither starts it
// nor clears the read model, esgen rescale waits for it to start, and a worker with
// Rescale starts it and changes the count.
func TestRebuildKeepsThePartitionCount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := historyDB(t)
	log, _ := testLogger(t)
	var resets atomic.Int64
	appendTyped(t, pool, "a", "Placed", "Placed", "Placed", "Placed", "Placed", "Placed")
	two := projection.Config{TotalPartitions: 2, Logger: log}
	runUntil(t, pool, histProjection("orders", &resets, 0, "Placed"), two, 6)
	gen, err := projection.RequestRebuild(ctx, pool, "orders")
	if err != nil {
		t.Fatal(err)
	}

	three := projection.Config{TotalPartitions: 3, Logger: log}
	var cm *projection.CountMismatchError
	if err := projection.Run(ctx, pool, histProjection("orders", &resets, 0, "Placed"), three); !errors.As(err, &cm) || cm.Current != 2 || cm.Count != 3 {
		t.Fatalf("a worker with another count during a pending rebuild: %v, want a CountMismatchError", err)
	}
	if resets.Load() != 0 || count(t, pool, "SELECT count(*) FROM hist_rm") != 6 {
		t.Fatalf("the refused worker cleared the read model (%d resets)", resets.Load())
	}
	if _, err := projection.Rescale(ctx, pool, "orders", 3); err == nil || !strings.Contains(err.Error(), "a rebuild (esgen rebuild) waits for a projector to start it") {
		t.Errorf("rescale of a pending rebuild: %v", err)
	}
	st, err := projection.Status(ctx, pool, "orders")
	if err != nil || st.Rebuild == nil || !st.Rebuild.Pending() || st.PartitionCount != 2 || st.Generation != gen {
		t.Fatalf("after the refusals: %+v, count %d, generation %d, %v", st.Rebuild, st.PartitionCount, st.Generation, err)
	}

	runUntil(t, pool, histProjection("orders", &resets, 0, "Placed"), two, 6)
	st, err = projection.Status(ctx, pool, "orders")
	if err != nil || resets.Load() != 1 || !st.Rebuild.CaughtUp || st.PartitionCount != 2 || st.Generation != gen || st.Rebuild.Done != 6 {
		t.Fatalf("the rebuild with the same count: %d resets, %+v, count %d, generation %d, %v", resets.Load(), st.Rebuild, st.PartitionCount, st.Generation, err)
	}

	// Another rebuild, started by a worker that changes the count on purpose.
	gen, err = projection.RequestRebuild(ctx, pool, "orders")
	if err != nil {
		t.Fatal(err)
	}
	three.Rescale = true
	runUntil(t, pool, histProjection("orders", &resets, 0, "Placed"), three, 6)
	st, err = projection.Status(ctx, pool, "orders")
	if err != nil || resets.Load() != 2 || !st.Rebuild.CaughtUp || st.Rebuild.Generation != gen || st.PartitionCount != 3 || st.Generation != gen+1 || st.Rebuild.Done != 6 {
		t.Fatalf("the rebuild with Rescale: %d resets, %+v, count %d, generation %d, %v", resets.Load(), st.Rebuild, st.PartitionCount, st.Generation, err)
	}
	if n := count(t, pool, "SELECT count(*) FROM esgen_events e WHERE NOT EXISTS (SELECT 1 FROM hist_rm r WHERE r.event_id = e.event_id)"); n != 0 {
		t.Errorf("%d events missing from the rebuilt read model", n)
	}
}
