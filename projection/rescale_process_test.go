package projection_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/esgen-dev/esgen/projection"
)

// switchRecord is the log line of the worker (one of ps) that changed the layout.
func switchRecord(t *testing.T, ps ...*proc) map[string]any {
	t.Helper()
	var rec map[string]any
	waitFor(t, time.Minute, "a worker to log the switch", func() bool {
		for _, p := range ps {
			if recs := p.logLines("partition count changed"); len(recs) > 0 {
				rec = recs[0]
			}
		}
		return rec != nil
	})
	return rec
}

// Real processes, writers appending throughout: 4 partitions run part of the way
// unevenly (partition 2 stops early, 3 never runs), then the count goes to 2, 3 and 1.
// Every event is applied exactly once and in order; the old-count workers left running
// apply nothing after a switch and exit with the message; an outdated count is refused.
func TestRescaleWithProcesses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newReadModelDB(t)
	wctx, stopWriters := context.WithCancel(ctx)
	defer stopWriters()
	var w writers
	writersDone := make(chan struct{})
	go func() {
		defer close(writersDone)
		w.run(wctx, t, pool, 2, 1_000_000, 500, 20*time.Millisecond)
	}()
	applied := func() int64 { return count(t, pool, "SELECT count(*) FROM rm_events") }
	worker := func(name string, total, key int, extra ...string) *proc {
		env := append([]string{fmt.Sprintf("TOTAL_PARTITIONS=%d", total), fmt.Sprintf("PARTITION_KEY=%d", key), "BATCH_SIZE=50"}, extra...)
		return startWorker(t, name, url, env...)
	}
	// The workers of a new count are deployed with RESCALE=1: the first switches.
	rescale := func(name string, total, key int) *proc { return worker(name, total, key, "RESCALE=yes") }
	stopAll := func(ps ...*proc) {
		for _, p := range ps {
			if code := p.stop(t); code != 0 {
				t.Fatalf("%s exited with %d after SIGTERM:\n%s", p.name, code, tailLines(p.Output(), 10))
			}
		}
	}
	// expectFenced waits for old-layout workers to stop with the message.
	expectFenced := func(from, to int, gen int64, ps ...*proc) {
		msg := fmt.Sprintf("partition count changed from %d to %d (generation %d); restart this worker with TOTAL_PARTITIONS=%d", from, to, gen, to)
		for _, p := range ps {
			if code := p.wait(t, time.Minute); code != 1 || !strings.Contains(p.Output(), msg) {
				t.Fatalf("%s: exit %d, want 1 with %q:\n%s", p.name, code, msg, tailLines(p.Output(), 5))
			}
		}
	}
	type switchCost struct {
		from, to  int
		tookMs    float64
		handled   float64
		carryOver time.Duration
	}
	var costs []switchCost
	measure := func(from, to int, ps ...*proc) {
		rec := switchRecord(t, ps...)
		start := time.Now()
		waitFor(t, 2*time.Minute, "the retired layouts to be carried over", func() bool {
			st, err := projection.Status(ctx, pool, "rm")
			return err == nil && !st.Rescaling()
		})
		costs = append(costs, switchCost{from, to, rec["took_ms"].(float64), rec["already_handled_after_watermark"].(float64), time.Since(start)})
	}

	// 4 partitions, uneven: 2 stops early, 3 never runs.
	p0, p1, p2 := worker("4/p0", 4, 0), worker("4/p1", 4, 1), worker("4/p2", 4, 2)
	waitFor(t, time.Minute, "some progress", func() bool { return applied() >= 300 })
	stopAll(p2)
	waitFor(t, time.Minute, "more progress on 0 and 1", func() bool { return applied() >= 1200 })
	stopAll(p1) // p0 keeps running across the switch

	// 4 → 2.
	q0, q1 := rescale("2/q0", 2, 0), rescale("2/q1", 2, 1)
	expectFenced(4, 2, 2, p0)
	measure(4, 2, q0, q1)
	mark := applied()
	waitFor(t, time.Minute, "progress with 2 partitions", func() bool { return applied() >= mark+500 })

	// 2 → 3, the 2-partition workers left running.
	r0, r1, r2 := rescale("3/r0", 3, 0), rescale("3/r1", 3, 1), rescale("3/r2", 3, 2)
	expectFenced(2, 3, 3, q0, q1)
	measure(2, 3, r0, r1, r2)
	mark = applied()
	waitFor(t, time.Minute, "progress with 3 partitions", func() bool { return applied() >= mark+500 })

	// 3 → 1.
	s0 := rescale("1/s0", 1, 0)
	expectFenced(3, 1, 4, r0, r1, r2)
	measure(3, 1, s0)

	// A stale deployment (a count used before, no RESCALE) is refused at start.
	stale := worker("stale-4", 4, 0)
	if code := stale.wait(t, time.Minute); code != 2 || !strings.Contains(stale.Output(), "TOTAL_PARTITIONS=4 does not match the live layout: the projection runs with 1 partitions (generation 4; counts used: 4 → 2 → 3 → 1) (4 is a count used before") {
		t.Fatalf("stale worker: exit %d:\n%s", code, stale.Output())
	}

	mark = applied()
	waitFor(t, time.Minute, "progress with 1 partition", func() bool { return applied() >= mark+300 })
	stopWriters()
	<-writersDone
	waitApplied(t, pool, 2*time.Minute, allAlive(s0))
	stopAll(s0)
	n := checkReadModel(t, pool)
	// Old-count workers never wrote under a later generation, and every generation's
	// rows were written by that generation's workers only.
	if bad := count(t, pool, `SELECT count(*) FROM rm_events WHERE
		(worker LIKE '4/%' AND generation <> 1) OR (worker LIKE '2/%' AND generation <> 2) OR
		(worker LIKE '3/%' AND generation <> 3) OR (worker LIKE '1/%' AND generation <> 4)`); bad != 0 {
		t.Fatalf("%d events applied by a worker of another layout", bad)
	}
	rows, err := pool.Query(ctx, "SELECT generation, total_partitions, count(*) FROM rm_events GROUP BY 1, 2 ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	var by []string
	for rows.Next() {
		var g, tot, c int64
		if err := rows.Scan(&g, &tot, &c); err != nil {
			t.Fatal(err)
		}
		by = append(by, fmt.Sprintf("gen %d (%d partitions): %d", g, tot, c))
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	t.Logf("%d events applied exactly once, in order; %s", n, strings.Join(by, ", "))
	for _, c := range costs {
		t.Logf("switch %d→%d: switch transaction %.1f ms; %0.f events after the watermark already handled (scanned and skipped in SQL, not re-applied); retired layout carried over %s after the switch was logged",
			c.from, c.to, c.tookMs, c.handled, c.carryOver.Round(time.Millisecond))
	}
}
