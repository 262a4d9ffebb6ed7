package projection_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
	"github.com/esgen-dev/esgen/projection"
)

// An idle worker whose poll interval is an hour is woken by an append on a pool (which
// notifies after its commit) and by an append in the caller's transaction that
// deferred its notification to NotifyAppended: only the notification can wake it.
func TestAppendWakesIdleWorker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newReadModelDB(t)
	log, _ := testLogger(t)
	p := projection.Projection{Name: "rm", Handler: readModelHandler(nil)}
	start(t, pool, p, projection.Config{PollInterval: time.Hour, Logger: log})

	// Once the listener listens, a notification is the only way to wake the worker
	// (a listener that connects wakes the workers once, which would hide a missing
	// notification).
	pgtest.WaitFor(t, 30*time.Second, "the projection to listen", func() bool {
		return count(t, pool, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN %'`) > 0
	})
	// The first read after start may still be running: let it end idle.
	appendN(t, pool, "first", 1, 1)
	waitApplied(t, pool, 30*time.Second, nil)

	appendN(t, pool, "pool", 1, 1)
	waitApplied(t, pool, 30*time.Second, nil)

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := eventstore.DeferNotify(ctx, tx); err != nil {
			return err
		}
		_, err := eventstore.Append(ctx, tx, "Counter", "caller", eventstore.NoStream, eventstore.EventData{Type: "Tick", Payload: []byte(`{}`)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := eventstore.NotifyAppended(ctx, conn); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, pool, 30*time.Second, nil)
	checkReadModel(t, pool)
}
