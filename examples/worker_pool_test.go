package examples_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
)

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

func TestWorkerPool(t *testing.T) {
	t.Parallel()
	r := runExample(t, "worker-pool", map[string]check{
		"caught-up":         handledCaughtUp,
		"split-shown":       splitShown(4),
		"checkpoints-shown": checkpointsShown,
	})
	if t.Failed() {
		return
	}
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
