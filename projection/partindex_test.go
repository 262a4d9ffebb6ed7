package projection_test

import (
	"context"
	"fmt"
	"log/slog"
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

// heapReads returns the rows read from esgen_events so far (index fetches and
// sequential reads), once the server's statistics are flushed.
func heapReads(t *testing.T, pool *pgxpool.Pool) int64 {
	t.Helper()
	var v int64
	if _, err := pool.Exec(context.Background(), "SELECT pg_stat_clear_snapshot()"); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(context.Background(), `SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0)
		FROM pg_stat_user_tables WHERE relname = 'esgen_events'`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// indexState returns whether an index of this name exists and whether it is usable.
func indexState(t *testing.T, pool *pgxpool.Pool, name string) (exists, usable bool) {
	t.Helper()
	err := pool.QueryRow(context.Background(), `SELECT true, i.indisvalid AND i.indisready FROM pg_index i
		WHERE i.indexrelid = to_regclass($1)`, name).Scan(&exists, &usable)
	if err != nil && err != pgx.ErrNoRows {
		t.Fatal(err)
	}
	return exists, usable
}

// The layout keeps the partition index of its count: with it, 4 partitions read each
// row of the stream about once in all (not 4 times); a change of the count builds the
// new count's index and, once the retired layout is deleted, drops the old one; an
// index left invalid by a failed build is replaced.
func TestPartitionIndexFollowsTheLayout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	pool := newPool(t, url)
	const n = 6000
	if _, err := pool.Exec(ctx, `SELECT esgen_append('A', 'a-' || g, 0, hashtext('a-' || g)::bigint & 4294967295,
		ARRAY[gen_random_uuid(), gen_random_uuid(), gen_random_uuid()], ARRAY['T', 'T', 'T'], ARRAY[1, 1, 1],
		ARRAY['{}'::jsonb, '{}', '{}'], ARRAY['{}'::jsonb, '{}', '{}'], ARRAY[NULL::uuid, NULL, NULL], ARRAY[NULL::uuid, NULL, NULL])
		FROM generate_series(1, 2000) g`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the events to become visible", func() bool {
		evs, err := eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{Limit: 2 * n})
		return err == nil && len(evs) == n
	})

	// A failed build leaves an invalid index of the name: it is dropped and built again.
	if _, err := pool.Exec(ctx, `CREATE UNIQUE INDEX CONCURRENTLY esgen_events_partitions_4 ON esgen_events ((partition_hash % 4), aggregate_type)`); err == nil {
		t.Fatal("a unique index on a repeated key was built")
	}
	if exists, usable := indexState(t, pool, "esgen_events_partitions_4"); !exists || usable {
		t.Fatalf("the failed build left exists=%t usable=%t, want an invalid index", exists, usable)
	}
	built, err := projection.EnsurePartitionIndex(ctx, pool, 4)
	if err != nil || !built {
		t.Fatalf("EnsurePartitionIndex(4) = %t, %v; want it built", built, err)
	}
	if _, usable := indexState(t, pool, "esgen_events_partitions_4"); !usable {
		t.Fatal("the partition index of 4 is not usable after EnsurePartitionIndex")
	}
	if built, err := projection.EnsurePartitionIndex(ctx, pool, 4); err != nil || built {
		t.Fatalf("EnsurePartitionIndex(4) again = %t, %v; want nothing to do", built, err)
	}

	// Rows read by 4 partitions that read through it. Statistics of a backend reach
	// the server when it ends (or at most once a second): measure with pools of their own.
	pool.Close()
	time.Sleep(1100 * time.Millisecond)
	stats := newPool(t, url)
	before := heapReads(t, stats)
	logs := runLayoutUntil(t, url, "p", 4, false, func(h int64, _ *pgxpool.Pool, _ string) bool { return h >= n })
	time.Sleep(1100 * time.Millisecond)
	scanned := heapReads(t, stats) - before
	if !strings.Contains(logs, "partition_index=true") {
		t.Errorf("the partitions did not read through the index; log:\n%s", logs)
	}
	if ratio := float64(scanned) / n; ratio > 1.1 {
		t.Errorf("4 partitions with the index read %d rows to handle %d: %.2f per event, want at most 1.1", scanned, n, ratio)
	}
	t.Logf("4 partitions with the partition index: %d rows read for %d events", scanned, n)

	// 4 -> 2: the workers of 2 build its index and, once the retired layout of 4 is
	// carried over and deleted, drop the index of 4.
	if _, err := projection.Rescale(ctx, stats, "p", 2); err != nil {
		t.Fatal(err)
	}
	runLayoutUntil(t, url, "p", 2, false, func(_ int64, pool *pgxpool.Pool, log string) bool {
		_, two := indexState(t, pool, "esgen_events_partitions_2")
		four, _ := indexState(t, pool, "esgen_events_partitions_4")
		return two && !four && strings.Contains(log, "partition index built") && strings.Contains(log, "partition index dropped")
	})

	// With NoPartitionIndex the layout leaves the indexes alone; DropUnusedPartitionIndexes
	// then drops the index of a count used before that no layout has any more.
	if _, err := projection.Rescale(ctx, stats, "p", 3); err != nil {
		t.Fatal(err)
	}
	runLayoutUntil(t, url, "p", 3, true, func(_ int64, pool *pgxpool.Pool, _ string) bool {
		var retired bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM esgen_checkpoints WHERE retired)`).Scan(&retired); err != nil {
			t.Fatal(err)
		}
		return !retired
	})
	if exists, _ := indexState(t, stats, "esgen_events_partitions_3"); exists {
		t.Error("NoPartitionIndex: the index of 3 was built")
	}
	if exists, _ := indexState(t, stats, "esgen_events_partitions_2"); !exists {
		t.Error("NoPartitionIndex: the index of 2 was dropped")
	}
	// An index built ahead for a count no projection used yet is kept.
	if built, err := projection.EnsurePartitionIndex(ctx, stats, 5); err != nil || !built {
		t.Fatalf("EnsurePartitionIndex(5) = %t, %v", built, err)
	}
	dropped, err := projection.DropUnusedPartitionIndexes(ctx, stats)
	if err != nil || len(dropped) != 1 || dropped[0] != "esgen_events_partitions_2" {
		t.Errorf("DropUnusedPartitionIndexes = %v, %v; want esgen_events_partitions_2", dropped, err)
	}
}

// runLayoutUntil runs every partition of projection name with a count in a pool of its own
// until done (given the events handled so far, the pool and the log) holds, then stops it and
// closes the pool. It returns the log.
func runLayoutUntil(t *testing.T, url, name string, total int, noIndex bool, done func(handled int64, pool *pgxpool.Pool, log string) bool) string {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var handled atomic.Int64
	h := projection.HandlerFunc(func(context.Context, pgx.Tx, *eventstore.Event) error { handled.Add(1); return nil })
	buf := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	run := make(chan error, 1)
	go func() {
		run <- projection.Run(ctx, pool, projection.Projection{Name: name, Partitioned: true, Handler: h},
			projection.Config{TotalPartitions: total, BatchSize: 100, PollInterval: 100 * time.Millisecond, NoPartitionIndex: noIndex,
				Logger: slog.New(slog.NewTextHandler(buf, nil))})
	}()
	waitFor(t, time.Minute, fmt.Sprintf("%s with %d partitions", name, total), func() bool { return done(handled.Load(), pool, buf.String()) })
	cancel()
	if err := <-run; err != nil {
		t.Fatal(err)
	}
	return buf.String()
}
