package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
)

// A single event is appended by its own statement (AppendEvent, AppendEventAt), not by
// esgen_append: the expected-version rules, the concurrency error with the actual
// version and "a failed append writes nothing" hold for it on a pool, on a connection
// and in a caller's transaction alike, and the head follows every append.
func TestSingleEventExpectedVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	conn, err := pgx.Connect(ctx, pool.Config().ConnConfig.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })

	inTx := func(f func(db eventstore.DBTX) error) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return f(tx) })
	}
	dbs := []struct {
		name string
		run  func(f func(db eventstore.DBTX) error) error
	}{
		{"pool", func(f func(eventstore.DBTX) error) error { return f(pool) }},
		{"conn", func(f func(eventstore.DBTX) error) error { return f(conn) }},
		{"tx", inTx},
	}
	e := ev("Happened", map[string]int{"n": 1})
	for _, d := range dbs {
		id := "agg-" + d.name
		appendAt := func(expected eventstore.ExpectedVersion) (eventstore.AppendResult, error) {
			var res eventstore.AppendResult
			err := d.run(func(db eventstore.DBTX) error {
				var err error
				res, err = eventstore.Append(ctx, db, "Thing", id, expected, e)
				return err
			})
			return res, err
		}
		conflict := func(expected eventstore.ExpectedVersion, actual int64) {
			t.Helper()
			_, err := appendAt(expected)
			var ce *eventstore.ConcurrencyError
			if !errors.As(err, &ce) || ce.Expected != expected || ce.Actual != actual || ce.AggregateID != id {
				t.Fatalf("%s: append with expected version %s: err = %v, want a concurrency error with actual %d", d.name, expected, err, actual)
			}
		}
		ok := func(expected eventstore.ExpectedVersion, version int64) {
			t.Helper()
			res, err := appendAt(expected)
			if err != nil {
				t.Fatalf("%s: append with expected version %s: %v", d.name, expected, err)
			}
			if res.Version != version || len(res.Positions) != 1 || res.Positions[0] <= 0 {
				t.Fatalf("%s: append with expected version %s: %+v, want version %d and one position", d.name, expected, res, version)
			}
			head, err := eventstore.AggregateVersion(ctx, pool, "Thing", id)
			if err != nil || head != version {
				t.Fatalf("%s: head %d (%v) after the append of version %d", d.name, head, err, version)
			}
		}
		conflict(eventstore.Exact(1), 0) // no aggregate yet
		ok(eventstore.NoStream, 1)
		conflict(eventstore.NoStream, 1)
		conflict(eventstore.Exact(2), 1)
		ok(eventstore.Exact(1), 2)
		ok(eventstore.Any, 3)
		conflict(eventstore.Exact(2), 3)
		ok(eventstore.Exact(3), 4)
		assertContiguous(t, pool, "Thing", id, 4)
	}
	if n := countEvents(t, pool); n != 4*len(dbs) {
		t.Fatalf("%d events stored, want %d: a failed append wrote", n, 4*len(dbs))
	}
	// The pool's connections were all given back usable (none left in a transaction).
	if _, err := eventstore.Append(ctx, pool, "Thing", "after", eventstore.NoStream, e); err != nil {
		t.Fatal(err)
	}
}

// The 40001 rule holds for single events at an exact version too (AppendEventAt): a
// transaction that already had an id when a younger one appended to the aggregate is
// refused, and nothing of it is written.
func TestOlderTransactionAppendingAtExactVersionIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	if _, err := eventstore.Append(ctx, pool, "Thing", "shared", eventstore.NoStream, ev("E", map[string]int{})); err != nil {
		t.Fatal(err)
	}
	older, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer older.Rollback(ctx)
	if _, err := eventstore.Append(ctx, older, "Thing", "elsewhere", eventstore.Any, ev("E", map[string]int{})); err != nil {
		t.Fatal(err)
	}
	if _, err := eventstore.Append(ctx, pool, "Thing", "shared", eventstore.Exact(1), ev("E", map[string]int{})); err != nil {
		t.Fatal(err)
	}
	_, err = eventstore.Append(ctx, older, "Thing", "shared", eventstore.Exact(2), ev("E", map[string]int{}))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "40001" {
		t.Fatalf("err = %v, want a serialization failure (40001)", err)
	}
	older.Rollback(ctx)
	// The head still names the younger transaction's version; retried, the append goes on.
	if _, err := eventstore.Append(ctx, pool, "Thing", "shared", eventstore.Exact(2), ev("E", map[string]int{})); err != nil {
		t.Fatalf("retry: %v", err)
	}
	assertContiguous(t, pool, "Thing", "shared", 3)
}

// The head of an aggregate records the transaction of its last append, whichever path
// wrote it (one event or several, pool or transaction).
func TestHeadFollowsSingleAndBatchAppends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	e := ev("E", map[string]int{})
	check := func(version int64) {
		t.Helper()
		var v int64
		var headTx, lastTx uint64
		err := pool.QueryRow(ctx, `
			SELECT h.version, h.last_transaction_id::text::bigint,
			       (SELECT e.transaction_id::text::bigint FROM esgen_events e
			        WHERE e.aggregate_type = h.aggregate_type AND e.aggregate_id = h.aggregate_id
			        ORDER BY e.aggregate_version DESC LIMIT 1)
			FROM esgen_aggregate_heads h WHERE h.aggregate_type = 'Thing' AND h.aggregate_id = 'a'`).Scan(&v, &headTx, &lastTx)
		if err != nil {
			t.Fatal(err)
		}
		if v != version || headTx != lastTx {
			t.Fatalf("head: version %d, transaction %d; want version %d and the last event's transaction %d", v, headTx, version, lastTx)
		}
	}
	if _, err := eventstore.Append(ctx, pool, "Thing", "a", eventstore.Any, e); err != nil {
		t.Fatal(err)
	}
	check(1)
	if _, err := eventstore.Append(ctx, pool, "Thing", "a", eventstore.Exact(1), e, e); err != nil {
		t.Fatal(err)
	}
	check(3)
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := eventstore.Append(ctx, tx, "Thing", "a", eventstore.Exact(3), e)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	check(4)
	assertContiguous(t, pool, "Thing", "a", 4)
}

// Concurrent single-event appends on a pool share notifications, but every append is
// covered: after the last append returned, a notification arrives after which a reader
// sees every event (at the latest; earlier ones may come too).
func TestConcurrentPoolAppendsAreAllNotified(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	url := pool.Config().ConnConfig.ConnString()
	listener, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, "LISTEN esgen_events"); err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := eventstore.Append(ctx, pool, "Thing", fmt.Sprintf("w%d-%d", w, i%5), eventstore.Any, ev("E", map[string]int{})); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	reader, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close(ctx)
	notifications := 0
	for {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("after %d notifications no further one, and the last did not show all %d events: %v", notifications, writers*each, err)
		}
		notifications++
		var n int
		if err := reader.QueryRow(ctx, `SELECT count(*) FROM esgen_events`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == writers*each {
			break
		}
	}
	if notifications > writers*each {
		t.Fatalf("%d notifications for %d appends", notifications, writers*each)
	}
}

// A pool whose connections start with esgen.notify = off appends without notifying,
// for single events and batches alike.
func TestQuietPoolDoesNotNotify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	wait := listen(t, url)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["esgen.notify"] = "off"
	quiet, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	e := ev("E", map[string]int{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				if _, err := eventstore.Append(ctx, quiet, "Thing", fmt.Sprintf("q%d-%d", w, i), eventstore.Any, e); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if _, err := eventstore.Append(ctx, quiet, "Thing", "batch", eventstore.Any, e, e); err != nil {
		t.Fatal(err)
	}
	if wait(500 * time.Millisecond) {
		t.Fatal("a pool with esgen.notify=off notified")
	}
}

// A single-event append that waited for the aggregate's lock while another transaction
// created the aggregate reads the head that transaction committed, even though its
// statement's snapshot is older: Exact(1) lands on version 2 (the statement hands over
// to esgen_append, which reads the head anew), NoStream is refused with actual 1.
func TestSingleEventAppendAfterWaitingForTheLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	for _, c := range []struct {
		expected eventstore.ExpectedVersion
		version  int64 // 0: a concurrency error with actual 1
	}{{eventstore.Exact(1), 2}, {eventstore.Any, 2}, {eventstore.NoStream, 0}} {
		id := "waited-" + c.expected.String()
		first, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := eventstore.Append(ctx, first, "Thing", id, eventstore.NoStream, ev("E", map[string]int{})); err != nil {
			t.Fatal(err)
		}
		type result struct {
			res eventstore.AppendResult
			err error
		}
		done := make(chan result, 1)
		go func() {
			res, err := eventstore.Append(ctx, pool, "Thing", id, c.expected, ev("E", map[string]int{}))
			done <- result{res, err}
		}()
		// Commit the first transaction once the second append waits for the lock.
		for waiting := 0; waiting == 0; {
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := first.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if c.version == 0 {
			var ce *eventstore.ConcurrencyError
			if !errors.As(r.err, &ce) || ce.Actual != 1 {
				t.Fatalf("%s after waiting: %+v, %v; want a concurrency error with actual 1", c.expected, r.res, r.err)
			}
			assertContiguous(t, pool, "Thing", id, 1)
			continue
		}
		if r.err != nil || r.res.Version != c.version {
			t.Fatalf("%s after waiting: %+v, %v; want version %d", c.expected, r.res, r.err, c.version)
		}
		assertContiguous(t, pool, "Thing", id, c.version)
	}
}
