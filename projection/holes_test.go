package projection_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
	"github.com/esgen-dev/esgen/migrate"
	"github.com/esgen-dev/esgen/projection"
)

// A transaction in another database holds a transaction id and stays open for 10 s:
// the events appended meanwhile are all handled while it is still open. Before holes,
// every reader on the server waited for it to end.
func TestLongTransactionElsewhereDoesNotStall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, _, pool := privateReadModelDB(t, "it holds a transaction open")
	otherURL, err := srv.CreateDatabase(ctx, "other_app")
	if err != nil {
		t.Fatal(err)
	}
	other := newPool(t, otherURL)
	if _, err := other.Exec(ctx, `CREATE TABLE nightly (id int)`); err != nil {
		t.Fatal(err)
	}

	log, logs := testLogger(t)
	p := projection.Projection{Name: "rm", Handler: readModelHandler(nil), Partitioned: true}
	r := start(t, pool, p, projection.Config{TotalPartitions: 2, BatchSize: 50, Logger: log})
	defer func() {
		if err := r.stop(t); err != nil {
			t.Errorf("run: %v\n%s", err, logs)
		}
	}()
	appendN(t, pool, "before", 10, 3)
	waitFor(t, time.Minute, "the first events handled", func() bool {
		return count(t, pool, "SELECT count(*) FROM rm_events") == 30
	})

	// The long transaction: it writes (so it holds a transaction id) and stays open.
	blocker, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(ctx)
	if _, err := blocker.Exec(ctx, `INSERT INTO nightly VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	opened := time.Now()

	// Appends made while it is open, one transaction each, timed until handled.
	const n = 40
	var lat []time.Duration
	for i := range n {
		agg := fmt.Sprintf("during-%d", i%7)
		t0 := time.Now()
		if _, err := eventstore.Append(ctx, pool, "Counter", agg, eventstore.Any, eventstore.EventData{Type: "Tick", Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		want := int64(30 + i + 1)
		for count(t, pool, "SELECT count(*) FROM rm_events") < want {
			// A liveness bound, not a speed check: a reader that waits for the open
			// transaction never gets there, however long it is given.
			if time.Since(opened) > time.Minute {
				t.Fatalf("%d of %d events appended during the open transaction handled after %s: the readers wait for it\n%s",
					count(t, pool, "SELECT count(*) FROM rm_events")-30, i+1, time.Since(opened).Round(time.Millisecond), logs)
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(t0))
	}
	// The transaction stays open 10 s in all.
	time.Sleep(time.Until(opened.Add(10 * time.Second)))
	// It is still open, with its transaction id: the events did not wait for it.
	var open int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = 'other_app' AND backend_xid IS NOT NULL AND state = 'idle in transaction'`).Scan(&open); err != nil {
		t.Fatal(err)
	}
	if open != 1 {
		t.Fatal("the long transaction in the other database is not open any more")
	}
	if err := blocker.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	checkReadModel(t, pool)
	slices.Sort(lat)
	t.Logf("%d appends during a transaction open in another database: handled after p50 %s, max %s (while it was open)",
		n, lat[n/2].Round(time.Microsecond), lat[n-1].Round(time.Microsecond))
}

// A database whose projection ran before checkpoints had holes (migrations 001 and 002
// only) keeps working after 003: its checkpoints are commit-safe positions without
// holes, and the projection goes on after them, replaying nothing.
func TestCheckpointsFromBeforeHolesKeepWorking(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewEmptyDatabase(t)
	pool := newPool(t, url)
	all := migrate.All()
	for _, m := range all[:2] {
		if m.Version > 2 {
			t.Fatalf("migration %s is not one of the first release's", m.Name)
		}
		if _, err := pool.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
	}
	if _, err := pool.Exec(ctx, readModelSchema); err != nil {
		t.Fatal(err)
	}
	appendN(t, pool, "old", 6, 2)
	// The projection as the first release left it: caught up to the last event, with
	// the columns of 002 only.
	if _, err := pool.Exec(ctx, `INSERT INTO esgen_projections (name, partition_count, counts_used) VALUES ('rm', 2, '{2}');
		INSERT INTO esgen_checkpoints (projection, generation, partition_key, partition_count, last_transaction_id, last_position, events_handled)
		SELECT 'rm', 1, k, 2, (SELECT max(transaction_id) FROM esgen_events), (SELECT max(global_position) FROM esgen_events), 6
		FROM generate_series(0, 1) k`); err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = migrate.Up(ctx, conn.Conn(), all)
	conn.Release()
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, pool, "new", 5, 2)
	log, logs := testLogger(t)
	r := start(t, pool, projection.Projection{Name: "rm", Handler: readModelHandler(nil), Partitioned: true}, projection.Config{TotalPartitions: 2, Logger: log})
	waitFor(t, time.Minute, "the new events handled", func() bool {
		return count(t, pool, "SELECT count(*) FROM rm_events") >= 10
	})
	if err := r.stop(t); err != nil {
		t.Fatalf("%v\n%s", err, logs)
	}
	if n := count(t, pool, "SELECT count(*) FROM rm_events WHERE aggregate_id LIKE 'old-%'"); n != 0 {
		t.Fatalf("%d events before the old checkpoints were handled again", n)
	}
	if n := count(t, pool, "SELECT count(*) FROM rm_events WHERE aggregate_id LIKE 'new-%'"); n != 10 {
		t.Fatalf("%d of the 10 new events handled", n)
	}
}

// A projector connected to a standby refuses to run, with one line that says why: on
// a standby PostgreSQL does not list running transactions in a snapshot, so reading
// past them would skip their events. A gap-safe read there fails the same way.
func TestStandbyIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	primary, url, pool := privateReadModelDB(t, "a primary and its standby")
	appendN(t, pool, "a", 3, 1)
	standby, err := primary.StartStandby(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = standby.Stop() })
	standbyURL := standby.DatabaseURL(pgtest.DatabaseName(url))

	_, err = eventstore.ReadFrom(ctx, newPool(t, standbyURL), eventstore.Cursor{}, eventstore.ReadOptions{})
	if !errors.Is(err, eventstore.ErrStandby) {
		t.Fatalf("ReadFrom on a standby: %v, want ErrStandby", err)
	}
	p := startWorker(t, "on-standby", standbyURL, "TOTAL_PARTITIONS=1")
	code := p.wait(t, time.Minute)
	if code == 0 {
		t.Fatalf("the projector ran on a standby:\n%s", p.Output())
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(p.Output()), "\n") {
		if strings.Contains(l, "standby") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "primary") {
		t.Fatalf("want one line saying to run on the primary, got:\n%s", p.Output())
	}
	t.Logf("exit %d: %s", code, lines[0])
}
