package projection_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
	"github.com/esgen-dev/esgen/projection"
)

// A transaction in another database holds a transaction id and stays open (10 s at
// most): the events appended meanwhile are all handled while it is still open. Before
// holes, every reader on the server waited for it to end.
func TestLongTransactionElsewhereDoesNotStall(t *testing.T) {
	t.Parallel()
	if _, err := pgtest.BinDir(); err != nil {
		t.Skip("needs PostgreSQL server binaries for a private server (this test holds a transaction open):", err)
	}
	ctx := context.Background()
	srv, err := pgtest.StartPrivate(ctx, pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	url := pgtest.NewDatabaseOn(t, srv)
	pool := newPool(t, url)
	if _, err := pool.Exec(ctx, readModelSchema); err != nil {
		t.Fatal(err)
	}
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
			if time.Since(opened) > 10*time.Second {
				t.Fatalf("%d of %d events appended during the open transaction handled after %s: the readers wait for it\n%s",
					count(t, pool, "SELECT count(*) FROM rm_events")-30, i+1, time.Since(opened).Round(time.Millisecond), logs)
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(t0))
	}
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
