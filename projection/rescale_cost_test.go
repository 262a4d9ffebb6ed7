package projection_test

import (
	"context"
	"testing"
	"time"

	"github.com/esgen-dev/esgen/projection"
)

// checkpointReads is how many rows of esgen_checkpoints the database's statements have
// read so far (sequential and index fetches), from the statistics.
func checkpointReads(t testing.TB, url string) int64 {
	t.Helper()
	pool := newPool(t, url)
	defer pool.Close()
	if _, err := pool.Exec(context.Background(), "SELECT pg_stat_force_next_flush()"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // other backends flush at most once a second
	return count(t, pool, `SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables WHERE relname = 'esgen_checkpoints'`)
}

// A switch from 1024 partitions, unevenly advanced (a tenth never ran), to 2: the
// switch transaction and the carry-over stay linear. The new partitions leave out what
// the retired layout handled with a few index probes per event, not a visit to every
// retired checkpoint (which made the cost old count × events); every event is applied
// once. Then 2 → 1024. The times are logged (docs/projections.md quotes them).
func TestRescaleFrom1024To2(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newReadModelDB(t)
	// 10,000 events over 2,000 aggregates, in one statement each round.
	for v := range 5 {
		if _, err := pool.Exec(ctx, `SELECT esgen_append('Counter', 'agg-' || g, $1, hashtext('agg-' || g)::bigint & 4294967295,
			ARRAY[gen_random_uuid()], ARRAY['Tick'], ARRAY[1], ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], ARRAY[NULL::uuid], ARRAY[NULL::uuid])
			FROM generate_series(1, 2000) g`, v); err != nil {
			t.Fatal(err)
		}
	}
	stored := count(t, pool, "SELECT count(*) FROM esgen_events")
	log, _ := testLogger(t)
	p := projection.Projection{Name: "rm", Partitioned: true, Handler: readModelHandler(nil)}
	// The layout of 1024 (partition 0 runs once), then partition k handled the first
	// (k mod 10) tenths of its events, as if its worker had: read model and checkpoint.
	r := start(t, pool, p, projection.Config{TotalPartitions: 1024, Partitions: []int{0}, Logger: log})
	waitFor(t, time.Minute, "partition 0 of 1024 caught up", func() bool {
		return count(t, pool, "SELECT count(*) FROM rm_events") == count(t, pool, "SELECT count(*) FROM esgen_events WHERE partition_hash % 1024 = 0")
	})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
		WITH ranked AS (
		    SELECT e.*, e.partition_hash % 1024 AS k,
		           row_number() OVER (PARTITION BY e.partition_hash % 1024 ORDER BY e.transaction_id, e.global_position) AS i,
		           count(*) OVER (PARTITION BY e.partition_hash % 1024) AS n
		    FROM esgen_events e WHERE e.partition_hash % 1024 <> 0),
		handled AS (SELECT * FROM ranked WHERE i <= n * (k % 10) / 10),
		rm AS (INSERT INTO rm_events (event_id, aggregate_id, aggregate_version, apply_seq, partition_key, total_partitions, generation, global_position, worker)
		       SELECT event_id, aggregate_id, aggregate_version, aggregate_version, k, 1024, 1, global_position, 'setup' FROM handled),
		seq AS (INSERT INTO rm_seq (aggregate_id, n) SELECT aggregate_id, max(aggregate_version) FROM handled GROUP BY aggregate_id)
		UPDATE esgen_checkpoints c SET last_transaction_id = h.transaction_id, last_position = h.global_position, events_handled = h.i
		FROM (SELECT DISTINCT ON (k) k, transaction_id, global_position, i FROM handled ORDER BY k, i DESC) h
		WHERE c.projection = 'rm' AND c.generation = 1 AND c.partition_key = h.k`); err != nil {
		t.Fatal(err)
	}
	handledBefore := count(t, pool, "SELECT count(*) FROM rm_events")

	before := checkpointReads(t, url)
	ch, err := projection.Rescale(ctx, pool, "rm", 2)
	if err != nil {
		t.Fatal(err)
	}
	switched := time.Now()
	c2 := projection.Config{TotalPartitions: 2, Logger: log}
	r = start(t, pool, p, c2)
	waitApplied(t, pool, 5*time.Minute, nil)
	caughtUp := time.Since(switched)
	after := checkpointReads(t, url)
	waitFor(t, time.Minute, "the retired layout to be carried over", func() bool {
		st, err := projection.Status(ctx, pool, "rm")
		return err == nil && !st.Rescaling()
	})
	carried := time.Since(switched)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	checkReadModel(t, pool)
	scanned := stored - handledBefore + ch.AlreadyHandled // rows the new partitions checked against the retired layout
	perEvent := float64(after-before) / float64(scanned)
	t.Logf("1024 → 2: switch transaction %.1f ms; %d events after the watermark already handled (skipped in SQL); caught up %s after the switch, retired layout carried over after %s; %d checkpoint rows read for %d events checked (%.1f per event)",
		float64(ch.Took.Microseconds())/1000, ch.AlreadyHandled, caughtUp.Round(time.Millisecond), carried.Round(time.Millisecond), after-before, scanned, perEvent)
	// A visit to every retired checkpoint per event would read about 1024 rows per event.
	if perEvent > 30 {
		t.Errorf("%.1f checkpoint rows read per event checked: the retired-layout filter does not use its index", perEvent)
	}

	ch, err = projection.Rescale(ctx, pool, "rm", 1024)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := projection.Status(ctx, pool, "rm"); err != nil || st.PartitionCount != 1024 || len(st.Partitions) != 1024 || st.Generation != 3 {
		t.Fatalf("after 2 → 1024: %v, %d live checkpoints, generation %d", err, len(st.Partitions), st.Generation)
	}
	t.Logf("2 → 1024: switch transaction %.1f ms", float64(ch.Took.Microseconds())/1000)
}
