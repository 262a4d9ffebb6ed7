package examples_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/esgen-dev/esgen/eventstore"
)

// handledCaughtUp holds when every stored event has been handled (handled_events has
// one row per handled event, keyed by event id).
func handledCaughtUp(ctx context.Context, r *runner) error {
	events, err := r.count(ctx, `SELECT count(*) FROM esgen_events`)
	if err != nil {
		return err
	}
	handled, err := r.count(ctx, `SELECT count(*) FROM handled_events`)
	if err != nil {
		return err
	}
	if events == 0 || handled != events {
		return fmt.Errorf("%d events stored, %d handled", events, handled)
	}
	return nil
}

// checkRouting checks that every handled event went to the partition of its account
// under the partition count it was handled with.
func checkRouting(t *testing.T, r *runner) {
	t.Helper()
	rows, err := r.pool.Query(context.Background(), `SELECT DISTINCT account_id, partition_key, total_partitions FROM handled_events`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id string
		var key, total int
		if err := rows.Scan(&id, &key, &total); err != nil {
			t.Fatal(err)
		}
		if want := eventstore.PartitionOf(id, total); key != want {
			t.Errorf("account %s was handled by partition %d of %d, want %d", id, key, total, want)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("no handled events")
	}
}

// checkBalances checks the read model against the appends: accounts acct-0001 … with
// the given balance and version each.
func checkBalances(t *testing.T, r *runner, accounts int, balance, version int64) {
	t.Helper()
	var n, wrong int64
	err := r.pool.QueryRow(context.Background(),
		`SELECT count(*), count(*) FILTER (WHERE balance <> $1 OR version <> $2) FROM balances`, balance, version).Scan(&n, &wrong)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(accounts) || wrong != 0 {
		t.Errorf("balances: %d accounts, %d of them not at balance %d and version %d; want %d accounts", n, wrong, balance, version, accounts)
	}
}

// handledBy returns the number of handled events per partition key under total.
func handledBy(t *testing.T, r *runner, total int) map[int]int64 {
	t.Helper()
	rows, err := r.pool.Query(context.Background(),
		`SELECT partition_key, count(*) FROM handled_events WHERE total_partitions = $1 GROUP BY partition_key`, total)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int]int64{}
	for rows.Next() {
		var k int
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		out[k] = n
	}
	return out
}

// splitShown checks the README's psql output: a row per partition 0…total-1 whose
// event count matches the database, and no shared account.
func splitShown(total int) check {
	return func(ctx context.Context, r *runner) error {
		out := r.lastOutput()
		for k := range total {
			n, err := r.count(ctx, `SELECT count(*) FROM handled_events WHERE partition_key = $1`, k)
			if err != nil {
				return err
			}
			if n == 0 || !regexp.MustCompile(fmt.Sprintf(`(?m)^\s*%d\s*\|\s*%d\s*\|\s*\d+\s*$`, k, n)).MatchString(out) {
				return fatalf("psql shows no row for partition %d with its %d events:\n%s", k, n, out)
			}
		}
		if !regexp.MustCompile(`(?m)^\s*shared_accounts\s*\n-+\n\s*0\s*$`).MatchString(out) {
			return fatalf("psql does not show 0 shared accounts:\n%s", out)
		}
		return nil
	}
}

// TestPartitioned runs the walk-throughs of examples/partitioned/README.md, each as a
// subtest against a database of its own.
func TestPartitioned(t *testing.T) {
	t.Parallel()
	runWalkthroughs(t, "partitioned", map[string]walkthrough{
		"processes": {
			checks: map[string]check{
				"caught-up":   handledCaughtUp,
				"split-shown": splitShown(4),
			},
			after: processesDone,
		},
		"pool": {
			checks: map[string]check{
				"caught-up":         handledCaughtUp,
				"split-shown":       splitShown(4),
				"checkpoints-shown": checkpointsShown,
			},
			after: poolDone,
		},
		"partition-count": {
			checks: map[string]check{
				"caught-up":         handledCaughtUp,
				"status-1":          statusShows(1, 1, "1"),
				"status-4":          statusShows(4, 2, "1 → 4"),
				"status-2":          statusShows(2, 3, "1 → 4 → 2"),
				"refuses-old-count": refusesOldCount,
				"nothing-missed":    nothingMissed,
				// The layout changes while the writers append: wait for their first rounds.
				"writer-1-appending": appendedMoreThan(1400 + 400),
				"writer-2-appending": appendedMoreThan(5400 + 400),
			},
			after: partitionCountDone,
		},
	})
}

// processesDone checks walk-through 1, four processes of one partition each: each
// handled its accounts, logged its start and its count, and partition 0 every event.
func processesDone(t *testing.T, r *runner) {
	checkRouting(t, r)
	// 200 accounts: opened, 5 deposits and a withdrawal, then 2 deposits and a withdrawal.
	checkBalances(t, r, 200, 50-5+20-5, 10)
	counts := handledBy(t, r, 4)
	var sum int64
	for k := range 4 {
		name := "partition-" + strconv.Itoa(k)
		log := r.logOf(name)
		if len(findLogs(log, "partition started", "partition", strconv.Itoa(k), "total_partitions", "4")) != 1 {
			t.Errorf("%s does not log that partition %d of 4 started:\n%s", name, k, lastLines(log, 20))
		}
		if counts[k] == 0 || len(findLogs(log, "partition stopped", "partition", strconv.Itoa(k), "events_processed", strconv.FormatInt(counts[k], 10))) != 1 {
			t.Errorf("%s does not log that it stopped after its %d events:\n%s", name, counts[k], lastLines(log, 20))
		}
		sum += counts[k]
	}
	if sum != 2000 {
		t.Errorf("the partitions handled %d events together, want 2000", sum)
	}
	// Partition 0 ran at debug level: it names every event it handles, all of its share.
	lines := findLogs(r.logOf("partition-0"), "handling event", "partition", "0")
	if int64(len(lines)) != counts[0] {
		t.Errorf("partition-0 logged %d events at debug level, want %d", len(lines), counts[0])
	}
	for _, l := range lines {
		if p := eventstore.PartitionOf(l["aggregate_id"], 4); p != 0 || l["event_id"] == "" || l["event_type"] == "" {
			t.Errorf("partition-0 handled %v (partition %d)", l, p)
			break
		}
	}
	for k := 1; k < 4; k++ {
		if n := len(findLogs(r.logOf("partition-"+strconv.Itoa(k)), "handling event")); n != 0 {
			t.Errorf("partition-%d logged %d events at info level", k, n)
		}
	}
}

// checkpointsShown checks the README's psql output of esgen_checkpoints: four
// partitions of 4 whose events_handled match the handled events.
func checkpointsShown(ctx context.Context, r *runner) error {
	out := r.lastOutput()
	for k := range 4 {
		n, err := r.count(ctx, `SELECT count(*) FROM handled_events WHERE partition_key = $1`, k)
		if err != nil {
			return err
		}
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^\s*%d\s*\|\s*4\s*\|\s*%d\s*$`, k, n)).MatchString(out) {
			return fatalf("psql shows no checkpoint of partition %d of 4 with %d events handled:\n%s", k, n, out)
		}
	}
	return nil
}

// poolDone checks walk-through 2: one process ran the four partitions, then two
// processes two each, which continued after the first one's checkpoints.
func poolDone(t *testing.T, r *runner) {
	checkRouting(t, r)
	checkBalances(t, r, 200, 50-5+20-5, 10)

	// One process ran the four partitions, each with its own count.
	pool := r.logOf("pool")
	if len(findLogs(pool, "projector starting", "partition_keys", "[0 1 2 3]", "total_partitions", "4")) != 1 {
		t.Errorf("the pool does not log partition_keys=[0 1 2 3] total_partitions=4:\n%s", lastLines(pool, 20))
	}
	first := map[int]int64{}
	var sum int64
	for k := range 4 {
		key := strconv.Itoa(k)
		if len(findLogs(pool, "partition started", "partition", key, "total_partitions", "4")) != 1 {
			t.Errorf("the pool did not start partition %d of 4:\n%s", k, lastLines(pool, 20))
		}
		stopped := findLogs(pool, "partition stopped", "partition", key)
		if len(stopped) != 1 {
			t.Errorf("the pool did not stop partition %d once:\n%s", k, lastLines(pool, 20))
			continue
		}
		first[k], _ = strconv.ParseInt(stopped[0]["events_processed"], 10, 64)
		if first[k] == 0 {
			t.Errorf("partition %d handled nothing in the pool", k)
		}
		sum += first[k]
	}
	if sum != 1400 {
		t.Errorf("the pool's partitions processed %d events, want the 1400 appended before it stopped", sum)
	}
	// The two smaller pools ran their keys only and continued after the checkpoints.
	counts := handledBy(t, r, 4)
	for name, keys := range map[string][]int{"pool-a": {0, 1}, "pool-b": {2, 3}} {
		log := r.logOf(name)
		if n := len(findLogs(log, "partition started")); n != 2 {
			t.Errorf("%s started %d partitions, want 2:\n%s", name, n, log)
		}
		for _, k := range keys {
			want := strconv.FormatInt(counts[k]-first[k], 10)
			if len(findLogs(log, "partition stopped", "partition", strconv.Itoa(k), "events_processed", want)) != 1 {
				t.Errorf("%s does not say partition %d processed the %s events appended after the first pool:\n%s", name, k, want, log)
			}
		}
	}
}

// statusShows checks the output of esgen status for the balances projection.
func statusShows(count, generation int, used string) check {
	return func(ctx context.Context, r *runner) error {
		out := r.lastOutput()
		want := fmt.Sprintf("projection balances: %d partition(s), generation %d (counts used: %s)", count, generation, used)
		if !strings.Contains(out, want) {
			return fatalf("esgen status does not say %q:\n%s", want, out)
		}
		for k := range count {
			if !regexp.MustCompile(fmt.Sprintf(`(?m)^\s+%d/%d\s`, k, count)).MatchString(out) {
				return fatalf("esgen status shows no partition %d/%d:\n%s", k, count, out)
			}
		}
		return nil
	}
}

// refusesOldCount starts a worker with the count of stage 1 and no --rescale: it must
// refuse to start and say why.
func refusesOldCount(ctx context.Context, r *runner) error {
	out, err := r.shell("./bin/balances-projector")
	if err == nil {
		return fatalf("a worker with TOTAL_PARTITIONS=1 started after 1 → 4 → 2 without --rescale:\n%s", out)
	}
	if !strings.Contains(out, "TOTAL_PARTITIONS=1 does not match the live layout: the projection runs with 2 partitions") ||
		!strings.Contains(out, "esgen rescale balances 1") || !strings.Contains(out, "--rescale") {
		return fatalf("the refused worker does not say which count is in force and how to change it:\n%s", out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		return fatalf("the refused worker exited with %v, want status 2:\n%s", err, out)
	}
	return nil
}

// appendedMoreThan holds once the stream has more than n events.
func appendedMoreThan(n int64) check {
	return func(ctx context.Context, r *runner) error {
		events, err := r.count(ctx, `SELECT count(*) FROM esgen_events`)
		if err != nil {
			return err
		}
		if events <= n {
			return fmt.Errorf("%d events appended, waiting for more than %d", events, n)
		}
		return nil
	}
}

// nothingMissed checks the README's psql output comparing the stream with the
// handled events.
func nothingMissed(ctx context.Context, r *runner) error {
	n, err := r.count(ctx, `SELECT count(*) FROM esgen_events`)
	if err != nil {
		return err
	}
	out := r.lastOutput()
	if !regexp.MustCompile(fmt.Sprintf(`(?m)^\s*%d\s*\|\s*%d\s*\|\s*0\s*$`, n, n)).MatchString(out) {
		return fatalf("psql does not show %d events, %d handled, 0 missed:\n%s", n, n, out)
	}
	return nil
}

// partitionCountDone checks walk-through 3, 1 → 4 → 2 → 1 partitions while events
// arrive: every event handled once and in its account's order, the old workers
// stopped with the message, and three switches logged.
func partitionCountDone(t *testing.T, r *runner) {
	ctx := context.Background()
	// 1400 + 2 × 4000 + 400 events, each handled once (handled_events is keyed by
	// event id) and applied in order (the handlers check each account's version).
	if n, err := r.count(ctx, `SELECT count(*) FROM handled_events`); err != nil || n != 9800 {
		t.Errorf("%d events handled (%v), want 9800", n, err)
	}
	checkBalances(t, r, 200, 45+50+50+5, 49)
	checkRouting(t, r)
	disorder, err := r.count(ctx, `SELECT count(*) FROM (
		SELECT version, row_number() OVER (PARTITION BY account_id ORDER BY handled_at, version) AS n FROM handled_events) AS h
		WHERE version <> n`)
	if err != nil || disorder != 0 {
		t.Errorf("%d events were handled out of their account's order (%v)", disorder, err)
	}
	// Every layout handled a share of the stream.
	for _, total := range []int{1, 4, 2} {
		var sum int64
		for _, n := range handledBy(t, r, total) {
			sum += n
		}
		if sum == 0 {
			t.Errorf("no event was handled with %d partitions", total)
		}
	}
	// The old workers stopped with the message, and the switches were logged.
	for _, c := range []struct {
		workers  []string
		from, to int
	}{
		{[]string{"single"}, 1, 4},
		{[]string{"w4-0", "w4-1", "w4-2", "w4-3"}, 4, 2},
		{[]string{"w2-0", "w2-1"}, 2, 1},
	} {
		msg := fmt.Sprintf("partition count changed from %d to %d", c.from, c.to)
		for _, w := range c.workers {
			stopped := findLogs(r.logOf(w), "projector stopped")
			if len(stopped) != 1 || !strings.Contains(stopped[0]["error"], msg) ||
				!strings.Contains(stopped[0]["error"], fmt.Sprintf("restart this worker with TOTAL_PARTITIONS=%d", c.to)) {
				t.Errorf("%s did not stop saying %q:\n%s", w, msg, lastLines(r.logOf(w), 10))
			}
		}
	}
	// What each worker says it processed is what it committed: per layout, the workers'
	// counts add up to the events handled with that partition count and key.
	processed := func(name string) int64 {
		var n int64
		for _, rec := range findLogs(r.logOf(name), "partition stopped") {
			v, _ := strconv.ParseInt(rec["events_processed"], 10, 64)
			n += v
		}
		return n
	}
	for _, c := range []struct {
		total   int
		workers map[int][]string
	}{
		{1, map[int][]string{0: {"single", "final"}}},
		{4, map[int][]string{0: {"w4-0"}, 1: {"w4-1"}, 2: {"w4-2"}, 3: {"w4-3"}}},
		{2, map[int][]string{0: {"w2-0"}, 1: {"w2-1"}}},
	} {
		handled := handledBy(t, r, c.total)
		for key, names := range c.workers {
			var sum int64
			for _, name := range names {
				sum += processed(name)
			}
			if sum != handled[key] {
				t.Errorf("%v logged %d events processed, but %d were handled by partition %d of %d", names, sum, handled[key], key, c.total)
			}
		}
	}
	switches := 0
	for _, name := range []string{"w4-0", "w4-1", "w4-2", "w4-3", "w2-0", "w2-1", "final"} {
		switches += len(findLogs(r.logOf(name), "partition count changed"))
	}
	// 1 → 4 and 4 → 2 were esgen rescale's; 2 → 1 the --rescale worker's.
	if switches != 1 || len(findLogs(r.logOf("final"), "partition count changed")) != 1 {
		t.Errorf("the workers logged %d changes of the partition count, want 1 (2 → 1, by the worker started with --rescale)", switches)
	}
}
