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

// eventScans returns how often esgen_events and an index were scanned so far.
func eventScans(t *testing.T, pool *pgxpool.Pool, index string) (seq, idx int64) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), "SELECT pg_stat_clear_snapshot()"); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(context.Background(), `SELECT coalesce(t.seq_scan, 0), coalesce(i.idx_scan, 0)
		FROM pg_stat_user_tables t LEFT JOIN pg_stat_user_indexes i ON i.relid = t.relid AND i.indexrelname = $1
		WHERE t.relname = 'esgen_events'`, index).Scan(&seq, &idx); err != nil {
		t.Fatal(err)
	}
	return seq, idx
}

// catchUp runs partitions of a projection in a pool of its own until they handled n
// events, then closes the pool (so the server's statistics include its backends).
func catchUp(t *testing.T, url string, total int, n int64) string {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int64
	h := projection.HandlerFunc(func(context.Context, pgx.Tx, *eventstore.Event) error { handled.Add(1); return nil })
	buf := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(buf, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- projection.Run(ctx, pool, projection.Projection{Name: fmt.Sprint("p", total), Partitioned: true, Handler: h},
			projection.Config{TotalPartitions: total, BatchSize: 100, NoPartitionIndex: true, Logger: log})
	}()
	waitFor(t, time.Minute, "the catch-up", func() bool { return handled.Load() >= n })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	pool.Close()
	if handled.Load() != n {
		t.Fatalf("handled %d events, want %d", handled.Load(), n)
	}
	return buf.String()
}

// A partitioned read keeps to an index from its checkpoint: the planner must not pick a
// sequential scan and a sort for each batch (it would with the plain modulo filter,
// whose selectivity it underestimates 50 times). With an index for the partition count,
// the partitions read through it.
func TestPartitionReadsUseAnIndex(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	pool := newPool(t, url)
	ctx := context.Background()
	// 6,000 events in one statement, then statistics.
	if _, err := pool.Exec(ctx, `SELECT esgen_append('A', 'a-' || g, 0, $1::bigint * 0 + (hashtext('a-' || g)::bigint & 4294967295),
		ARRAY[gen_random_uuid(), gen_random_uuid(), gen_random_uuid()], ARRAY['T', 'T', 'T'], ARRAY[1, 1, 1],
		ARRAY['{}'::jsonb, '{}', '{}'], ARRAY['{}'::jsonb, '{}', '{}'], ARRAY[NULL::uuid, NULL, NULL], ARRAY[NULL::uuid, NULL, NULL])
		FROM generate_series(1, 2000) g`, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE esgen_events"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the events to become visible", func() bool {
		evs, err := eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{Limit: 10000})
		return err == nil && len(evs) == 6000
	})

	// Statistics of a backend reach the server when it ends (or once a second at most):
	// measure on a fresh pool that does nothing else.
	pool.Close()
	time.Sleep(200 * time.Millisecond)
	pool = newPool(t, url)
	seq0, _ := eventScans(t, pool, "")
	logs := catchUp(t, url, 4, 6000)
	time.Sleep(1100 * time.Millisecond) // statistics are flushed at most once a second
	seq1, _ := eventScans(t, pool, "")
	if seq1 != seq0 || !strings.Contains(logs, "partition_index=false") {
		t.Errorf("4 partitions without an index: %d sequential scans of esgen_events, want 0", seq1-seq0)
	}

	// On a connection of its own, closed at once, so that the scan of the table that
	// builds the index is counted before the measurement.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE INDEX esgen_events_partitions_3 ON esgen_events ((partition_hash % 3), transaction_id, global_position)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	time.Sleep(1100 * time.Millisecond)
	seq1, idx0 := eventScans(t, pool, "esgen_events_partitions_3")
	logs = catchUp(t, url, 3, 6000)
	time.Sleep(1100 * time.Millisecond)
	seq2, idx1 := eventScans(t, pool, "esgen_events_partitions_3")
	if seq2 != seq1 || idx1 == idx0 || !strings.Contains(logs, "partition_index=true") {
		t.Errorf("3 partitions with an index: %d sequential scans, %d scans of the index; log:\n%s", seq2-seq1, idx1-idx0, logs)
	}
}
