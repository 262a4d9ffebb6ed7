package projection_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projection"
)

// queuedHandler writes each event through projection.Queue (sent as one pipeline per
// batch) and reads its own writes back through tx: the read must see every write
// queued before it.
func queuedHandler(t testing.TB) projection.Handler {
	return projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
		q := projection.Queue(tx)
		if _, err := q.Exec(ctx, `INSERT INTO q_events (event_id, aggregate_id, aggregate_version) VALUES ($1, $2, $3)`,
			ev.EventID, ev.AggregateID, ev.AggregateVersion); err != nil {
			return err
		}
		if _, err := q.Exec(ctx, `INSERT INTO q_totals (aggregate_id, n) VALUES ($1, 1)
			ON CONFLICT (aggregate_id) DO UPDATE SET n = q_totals.n + 1`, ev.AggregateID); err != nil {
			return err
		}
		if ev.AggregateVersion%5 == 0 { // now and then, read what this aggregate has so far
			var n int64
			if err := tx.QueryRow(ctx, `SELECT n FROM q_totals WHERE aggregate_id = $1`, ev.AggregateID).Scan(&n); err != nil {
				return err
			}
			if n != ev.AggregateVersion {
				return fmt.Errorf("read %d applications of %s at version %d: queued writes not visible", n, ev.AggregateID, ev.AggregateVersion)
			}
		}
		return nil
	})
}

const queuedSchema = `
CREATE TABLE q_events (event_id uuid PRIMARY KEY, aggregate_id text NOT NULL,
    aggregate_version bigint NOT NULL CHECK (aggregate_id <> 'poison-0' OR aggregate_version < 3));
CREATE TABLE q_totals (aggregate_id text PRIMARY KEY, n bigint NOT NULL);`

// Queued writes reach the read model exactly once, in order, and reads in the batch
// see them.
func TestQueuedWrites(t *testing.T) {
	t.Parallel()
	_, pool := newReadModelDB(t)
	if _, err := pool.Exec(context.Background(), queuedSchema); err != nil {
		t.Fatal(err)
	}
	log, logs := testLogger(t)
	p := projection.Projection{Name: "q", Partitioned: true, Handler: queuedHandler(t)}
	r := start(t, pool, p, projection.Config{TotalPartitions: 2, BatchSize: 50, Logger: log})
	appendN(t, pool, "agg", 20, 12)
	waitFor(t, time.Minute, "every event written", func() bool {
		return count(t, pool, "SELECT count(*) FROM q_events") == 240
	})
	if err := r.stop(t); err != nil {
		t.Fatalf("%v\n%s", err, logs)
	}
	if bad := count(t, pool, "SELECT count(*) FROM q_totals WHERE n <> 12"); bad != 0 {
		t.Fatalf("%d aggregates with a total other than 12", bad)
	}
}

// A queued write that fails is the failure of the event that queued it: the events
// before it commit, the partition stops before it and names it.
func TestQueuedWriteFailureStopsAtItsEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newReadModelDB(t)
	if _, err := pool.Exec(ctx, queuedSchema); err != nil {
		t.Fatal(err)
	}
	appendN(t, pool, "poison", 1, 5) // version 3 of poison-0 breaks the CHECK
	log, logs := testLogger(t)
	p := projection.Projection{Name: "q", Handler: queuedHandler(t)}
	r := start(t, pool, p, projection.Config{BatchSize: 50, MaxRetries: 1, RetryBackoff: time.Millisecond, Logger: log})
	var err error
	select {
	case err = <-r.done:
		r.done <- err // for the cleanup
	case <-time.After(time.Minute):
		t.Fatalf("the partition did not stop\n%s", logs)
	}
	var herr *projection.HandlerError
	if !errors.As(err, &herr) || herr.Event.AggregateVersion != 3 || !strings.Contains(err.Error(), "q_events") {
		t.Fatalf("run: %v, want a handler error on version 3 naming the failed write\n%s", err, logs)
	}
	if n := count(t, pool, "SELECT count(*) FROM q_events"); n != 2 {
		t.Fatalf("%d events written, want the 2 before the failing one", n)
	}
	st, err := projection.Status(ctx, pool, "q")
	if err != nil {
		t.Fatal(err)
	}
	if cp := st.Partitions[0].Checkpoint; cp.Handled(herr.Event.Position) || st.Partitions[0].EventsHandled != 2 {
		t.Fatalf("checkpoint %s (%d handled) is not just before the failing event %s", cp, st.Partitions[0].EventsHandled, herr.Event.Position)
	}
}

// Outside a batch of the runtime, Queue is the transaction itself: nothing is queued.
func TestQueueOutsideABatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newReadModelDB(t)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := projection.Queue(tx).Exec(ctx, `CREATE TEMP TABLE t (x int)`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO t VALUES (1)`); err != nil {
		t.Fatalf("the statement sent through Queue did not run at once: %v", err)
	}
}
