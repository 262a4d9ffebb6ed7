package examples_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// ledgerCaughtUp holds when the ledger has one line per stored event.
func ledgerCaughtUp(ctx context.Context, r *runner) error {
	events, err := r.count(ctx, `SELECT count(*) FROM esgen_events`)
	if err != nil {
		return err
	}
	lines, err := r.count(ctx, `SELECT count(*) FROM ledger_entries`)
	if err != nil {
		return err
	}
	if events == 0 || lines != events {
		return fmt.Errorf("%d events stored, %d ledger lines", events, lines)
	}
	return nil
}

// ledgerShows checks the output of the README's two psql queries.
func ledgerShows(lastLine, bankTotal, handled int) check {
	return func(ctx context.Context, r *runner) error {
		out := r.lastOutput()
		last := regexp.MustCompile(fmt.Sprintf(`(?m)^\s*%d\s*\|\s*acct-010\s*\|\s*withdrawal\s*\|\s*-5\s*\|\s*%d\s*$`, lastLine, bankTotal))
		cp := regexp.MustCompile(fmt.Sprintf(`(?m)^\s*ledger\s*\|\s*0\s*\|\s*1\s*\|\s*%d\s*$`, handled))
		if !last.MatchString(out) || !cp.MatchString(out) {
			return fatalf("want ledger line %d (bank total %d) and a checkpoint of 1 partition with %d events handled:\n%s",
				lastLine, bankTotal, handled, out)
		}
		return nil
	}
}

func TestSingleWorker(t *testing.T) {
	t.Parallel()
	r := runExample(t, "single-worker", map[string]check{
		"caught-up":      ledgerCaughtUp,
		"checkpoint-70":  ledgerShows(70, 450, 70),
		"checkpoint-130": ledgerShows(130, 900, 130),
	})
	if t.Failed() {
		return
	}
	// Each run handled its own events only: 70, then the 60 appended while stopped.
	for name, n := range map[string]int{"first-run": 70, "second-run": 60} {
		log := r.logOf(name)
		if len(findLogs(log, "partition stopped", "projection", "ledger", "partition", "0", "total_partitions", "1", "events_processed", fmt.Sprint(n))) != 1 {
			t.Errorf("%s's log does not say that partition 0 of 1 stopped after %d events:\n%s", name, n, log)
		}
	}
	// The ledger holds every event once, in the stream's commit order, numbered 1…130.
	ctx := context.Background()
	var ok bool
	err := r.pool.QueryRow(ctx, `
		SELECT (SELECT array_agg(event_id ORDER BY line) FROM ledger_entries)
		     = (SELECT array_agg(event_id ORDER BY transaction_id, global_position) FROM esgen_events)
		   AND (SELECT max(line) = count(*) AND count(*) = 130 FROM ledger_entries)`).Scan(&ok)
	if err != nil || !ok {
		t.Errorf("the ledger is not the stream in commit order, numbered without gaps (%v)", err)
	}
	// The spec says partitioned: false, so partition settings are refused.
	out, err := r.shell("./bin/ledger-projector --total-partitions=2")
	if err == nil || !strings.Contains(out, "not partitioned") {
		t.Errorf("ledger-projector --total-partitions=2: %v, %s; want a refusal", err, out)
	}
}
