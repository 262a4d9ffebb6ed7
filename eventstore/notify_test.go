package eventstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
)

// Appends notify channel esgen_events on commit, unless the connection sets
// esgen.notify = off (here in the connection URL, as an application would).
func TestAppendNotifiesUnlessTurnedOff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)

	listener, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, "LISTEN esgen_events"); err != nil {
		t.Fatal(err)
	}
	wait := func(d time.Duration) bool {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		_, err := listener.WaitForNotification(ctx)
		return err == nil
	}

	writer, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(ctx)
	if _, err := eventstore.Append(ctx, writer, "Thing", "a", eventstore.Any, ev("E", map[string]int{})); err != nil {
		t.Fatal(err)
	}
	if !wait(10 * time.Second) {
		t.Fatal("no notification after an append")
	}

	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["esgen.notify"] = "off" // as ?esgen.notify=off in a URL
	quiet, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close(ctx)
	if _, err := eventstore.Append(ctx, quiet, "Thing", "b", eventstore.Any, ev("E", map[string]int{})); err != nil {
		t.Fatal(err)
	}
	// A later notifying append is the marker: if the quiet append had notified, its
	// notification would arrive first and the payloads would not tell them apart, so
	// count: exactly one notification must arrive for the two appends.
	if _, err := eventstore.Append(ctx, writer, "Thing", "c", eventstore.Any, ev("E", map[string]int{})); err != nil {
		t.Fatal(err)
	}
	if !wait(10 * time.Second) {
		t.Fatal("no notification after the marker append")
	}
	if wait(500 * time.Millisecond) {
		t.Fatal("two notifications for one quiet and one notifying append: esgen.notify=off did not silence the first")
	}
}

// listen returns a function that waits up to d for the next notification on
// esgen_events and reports whether one came.
func listen(t *testing.T, url string) func(d time.Duration) bool {
	t.Helper()
	ctx := context.Background()
	listener, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Close(ctx) })
	if _, err := listener.Exec(ctx, "LISTEN esgen_events"); err != nil {
		t.Fatal(err)
	}
	return func(d time.Duration) bool {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		_, err := listener.WaitForNotification(ctx)
		return err == nil
	}
}

// An append that esgen runs in a transaction of its own (on a pool) notifies after its
// commit: the notification arrives, and when it does the event is visible to another
// connection. A failed append (a concurrency conflict) notifies nobody and leaves the
// pool's connection usable. The same holds without prepared statements (as behind a
// transaction-pooling proxy).
func TestOwnAppendNotifiesAfterCommit(t *testing.T) {
	t.Parallel()
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeDescribeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			testOwnAppendNotifiesAfterCommit(t, mode)
		})
	}
}

func testOwnAppendNotifiesAfterCommit(t *testing.T, mode pgx.QueryExecMode) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	wait := listen(t, url)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	cfg.ConnConfig.DefaultQueryExecMode = mode
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	reader, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close(ctx)

	if _, err := eventstore.Append(ctx, pool, "Thing", "a", eventstore.NoStream, ev("E", map[string]int{})); err != nil {
		t.Fatal(err)
	}
	if !wait(10 * time.Second) {
		t.Fatal("no notification after an append on a pool")
	}
	var n int
	if err := reader.QueryRow(ctx, `SELECT count(*) FROM esgen_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("notified with %d events visible, want 1", n)
	}

	// A conflict: nothing is written, nothing notified.
	_, err = eventstore.Append(ctx, pool, "Thing", "a", eventstore.NoStream, ev("E", map[string]int{}))
	if !errors.Is(err, eventstore.ErrConcurrency) {
		t.Fatalf("append to an existing aggregate with NoStream: %v, want a concurrency error", err)
	}
	if wait(500 * time.Millisecond) {
		t.Fatal("a failed append notified")
	}
	// The connection was given back in a usable state (a pool destroys a connection
	// returned inside a transaction).
	if _, err := eventstore.Append(ctx, pool, "Thing", "a", eventstore.Exact(1), ev("E", map[string]int{})); err != nil {
		t.Fatal(err)
	}
	if !wait(10 * time.Second) {
		t.Fatal("no notification after the append that followed a conflict")
	}
	if got := pool.Stat().NewConnsCount(); got != 1 {
		t.Fatalf("the pool opened %d connections, want 1: the conflict left its connection unusable", got)
	}
}

// Appends in the caller's transaction notify at its commit by default, and not at all
// when it rolls back; with DeferNotify they do not notify at the commit, and
// NotifyAppended after it does.
func TestCallerTransactionNotifies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	wait := listen(t, url)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	inTx := func(deferNotify, commit bool) {
		t.Helper()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if deferNotify {
			if err := eventstore.DeferNotify(ctx, tx); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := eventstore.Append(ctx, tx, "Thing", "a", eventstore.Any, ev("E", map[string]int{})); err != nil {
			t.Fatal(err)
		}
		if commit {
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}

	inTx(false, false)
	if wait(500 * time.Millisecond) {
		t.Fatal("a rolled-back transaction notified")
	}
	inTx(false, true)
	if !wait(10 * time.Second) {
		t.Fatal("no notification at the commit of a caller's transaction")
	}
	inTx(true, true)
	if wait(500 * time.Millisecond) {
		t.Fatal("a transaction that deferred its notification notified at its commit")
	}
	if err := eventstore.NotifyAppended(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if !wait(10 * time.Second) {
		t.Fatal("no notification from NotifyAppended")
	}
	inTx(true, false)
	if wait(500 * time.Millisecond) {
		t.Fatal("a rolled-back transaction that deferred its notification notified")
	}
}
