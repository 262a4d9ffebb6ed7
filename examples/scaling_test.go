package examples_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

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
	if !strings.Contains(out, "TOTAL_PARTITIONS=1 is outdated") || !strings.Contains(out, "--rescale") {
		return fatalf("the refused worker does not say that its count is outdated and how to switch back:\n%s", out)
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

func TestScaling(t *testing.T) {
	t.Parallel()
	r := runExample(t, "scaling", map[string]check{
		"caught-up":         handledCaughtUp,
		"status-1":          statusShows(1, 1, "1"),
		"status-4":          statusShows(4, 2, "1 → 4"),
		"status-2":          statusShows(2, 3, "1 → 4 → 2"),
		"refuses-old-count": refusesOldCount,
		"nothing-missed":    nothingMissed,
		// The layout changes while the writers append: wait for their first rounds.
		"writer-1-appending": appendedMoreThan(1400 + 400),
		"writer-2-appending": appendedMoreThan(5400 + 400),
	})
	if t.Failed() {
		return
	}
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
	if switches != 3 {
		t.Errorf("the workers logged %d changes of the partition count, want 3 (1 → 4, 4 → 2, 2 → 1)", switches)
	}
}
