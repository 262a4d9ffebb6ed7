package examples_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
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

func TestPartitioned(t *testing.T) {
	t.Parallel()
	r := runExample(t, "partitioned", map[string]check{
		"caught-up":   handledCaughtUp,
		"split-shown": splitShown(4),
	})
	if t.Failed() {
		return
	}
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
