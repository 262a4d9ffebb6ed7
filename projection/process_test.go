package projection_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/esgen-dev/esgen/projection"
)

// allAlive fails when one of the workers exited.
func allAlive(ps ...*proc) func() error {
	return func() error {
		for _, p := range ps {
			if p.exited() {
				return fmt.Errorf("worker %s exited with code %d:\n%s", p.name, p.code, tailLines(p.Output(), 10))
			}
		}
		return nil
	}
}

// Four worker processes, one per partition, and a second worker on partition 2, while
// 8 writers append 20,000 events over 2,000 aggregates with commits out of order; one
// worker is SIGKILLed in the middle of a batch and restarted. Every event is applied
// once, in version order per aggregate, by the partition FNV-1a names.
func TestProcessesExactlyOnce(t *testing.T) {
	t.Parallel()
	events, aggregates := 20000, 2000
	if testing.Short() {
		events, aggregates = 4000, 400
	}
	url, pool := newReadModelDB(t)
	common := []string{"TOTAL_PARTITIONS=4", "BATCH_SIZE=50"}
	env := func(key int, extra ...string) []string {
		return append(append([]string{fmt.Sprintf("PARTITION_KEY=%d", key)}, common...), extra...)
	}
	p0 := startWorker(t, "p0", url, env(0)...)
	// Partition 1 is slow (2 ms per event, 50 per batch): a kill lands inside a batch.
	p1 := startWorker(t, "p1", withAppName(t, url, "worker-p1"), env(1, "TESTWORKER_SLEEP=2ms")...)
	// Two workers with the same partition key: whichever moves the checkpoint first
	// fences the other's batch off (logged at debug level).
	p2 := startWorker(t, "p2", url, env(2, "LOG_LEVEL=debug")...)
	p2b := startWorker(t, "p2b", url, env(2, "LOG_LEVEL=debug")...)
	p3 := startWorker(t, "p3", url, env(3)...)

	var w writers
	writersDone := make(chan struct{})
	go func() {
		defer close(writersDone)
		w.run(context.Background(), t, pool, 8, events, aggregates, 2*time.Millisecond)
	}()

	waitFor(t, 2*time.Minute, "a fifth of the events applied on partition 1", func() bool {
		return count(t, pool, "SELECT count(*) FROM rm_events WHERE partition_key = 1") >= int64(events/20)
	})
	// Kill p1 while its transaction is open (it holds an xid: it locked its checkpoint).
	waitFor(t, time.Minute, "p1 inside a batch", func() bool {
		return count(t, pool, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'worker-p1'
			AND backend_xid IS NOT NULL AND state <> 'idle'`) > 0
	})
	applied := count(t, pool, "SELECT count(*) FROM rm_events WHERE partition_key = 1")
	if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p1.wait(t, 30*time.Second)
	t.Logf("SIGKILLed p1 in a batch with %d events of partition 1 applied", applied)
	p1 = startWorker(t, "p1-restarted", url, env(1)...)

	<-writersDone
	waitApplied(t, pool, 3*time.Minute, allAlive(p0, p1, p2, p2b, p3))
	for _, p := range []*proc{p0, p1, p2, p2b, p3} {
		if code := p.stop(t); code != 0 {
			t.Errorf("%s exited with %d after SIGTERM:\n%s", p.name, code, tailLines(p.Output(), 10))
		}
		if len(p.logLines("partition started")) != 1 || len(p.logLines("partition stopped")) != 1 {
			t.Errorf("%s: missing start or stop log line", p.name)
		}
	}
	n := checkReadModel(t, pool)
	rows, err := pool.Query(context.Background(), "SELECT worker, count(*) FROM rm_events GROUP BY worker ORDER BY worker")
	if err != nil {
		t.Fatal(err)
	}
	var by []string
	for rows.Next() {
		var name string
		var c int64
		if err := rows.Scan(&name, &c); err != nil {
			t.Fatal(err)
		}
		by = append(by, fmt.Sprintf("%s=%d", name, c))
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	fenced := len(p2.logLines("checkpoint moved by another worker; re-reading")) + len(p2b.logLines("checkpoint moved by another worker; re-reading"))
	t.Logf("%d events (%d acknowledged appends, %d retried) applied exactly once; by worker: %s; batches fenced off on partition 2: %d",
		n, w.appended.Load(), w.errs.Load(), strings.Join(by, " "), fenced)
}

// The server restarts (fast shutdown: every connection cut) while workers run and
// writers append: the workers retry by themselves and finish, exactly once.
func TestServerRestartMidRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, url, pool := privateReadModelDB(t, "it restarts the server")
	events := 6000
	if testing.Short() {
		events = 2000
	}
	w0 := startWorker(t, "w0", url, "TOTAL_PARTITIONS=2", "PARTITION_KEY=0", "BATCH_SIZE=20", "TESTWORKER_SLEEP=200us")
	w1 := startWorker(t, "w1", url, "TOTAL_PARTITIONS=2", "PARTITION_KEY=1", "BATCH_SIZE=20", "TESTWORKER_SLEEP=200us")
	var w writers
	writersDone := make(chan struct{})
	go func() {
		defer close(writersDone)
		w.run(ctx, t, pool, 4, events, 300, time.Millisecond)
	}()
	waitFor(t, 2*time.Minute, "a quarter of the events applied", func() bool {
		return count(t, pool, "SELECT count(*) FROM rm_events") >= int64(events/4)
	})
	before := count(t, pool, "SELECT count(*) FROM rm_events")
	restartStart := time.Now()
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("server restarted in %s with %d events applied", time.Since(restartStart).Round(time.Millisecond), before)
	<-writersDone
	waitApplied(t, pool, 3*time.Minute, allAlive(w0, w1))
	for _, p := range []*proc{w0, w1} {
		if len(p.logLines("database error, retrying")) == 0 && len(p.logLines("listener lost its connection; polling until it is back")) == 0 {
			t.Errorf("%s logged no retry after the restart", p.name)
		}
		if code := p.stop(t); code != 0 {
			t.Errorf("%s exited with %d:\n%s", p.name, code, tailLines(p.Output(), 10))
		}
	}
	n := checkReadModel(t, pool)
	t.Logf("%d events applied exactly once across the restart (%d append attempts retried by the writers)", n, w.errs.Load())
}

// A handler failing on one event stops its partition there with a clear log line and
// exit code 1; the other partition goes on; after a fix and a restart the stopped
// partition continues from just before the event.
func TestPoisonEventStopsOnlyItsPartition(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newReadModelDB(t)
	appendN(t, pool, "agg", 40, 5)
	var poisonID string
	var poisonPos int64
	if err := pool.QueryRow(ctx, `SELECT event_id::text, global_position FROM esgen_events WHERE partition_hash % 2 = 0
		ORDER BY transaction_id, global_position OFFSET 9 LIMIT 1`).Scan(&poisonID, &poisonPos); err != nil {
		t.Fatal(err)
	}
	w0 := startWorker(t, "w0", url, "TOTAL_PARTITIONS=2", "PARTITION_KEY=0", "TESTWORKER_FAIL_EVENT="+poisonID, "MAX_RETRIES=2")
	w1 := startWorker(t, "w1", url, "TOTAL_PARTITIONS=2", "PARTITION_KEY=1")
	if code := w0.wait(t, time.Minute); code != 1 {
		t.Fatalf("w0 exited with %d, want 1:\n%s", code, w0.Output())
	}
	recs := w0.logLines("handler failed; partition stopped before the event")
	if len(recs) != 1 || recs[0]["event_id"] != poisonID || recs[0]["partition"] != float64(0) || recs[0]["aggregate_id"] == nil || recs[0]["position"] == nil {
		t.Fatalf("no clear log line for the poison event:\n%s", w0.Output())
	}
	t.Logf("w0 stopped: %s", strings.TrimSpace(tailLines(w0.Output(), 1)))
	// The other partition goes on, also with events appended after the failure.
	appendN(t, pool, "late", 20, 1)
	waitFor(t, time.Minute, "partition 1 to apply all its events", func() bool {
		return count(t, pool, "SELECT count(*) FROM rm_events WHERE partition_key = 1") ==
			count(t, pool, "SELECT count(*) FROM esgen_events WHERE partition_hash % 2 = 1")
	})
	// Partition 0 stopped just before the poison event: the nine events before it are
	// applied, the checkpoint is the ninth.
	if n := count(t, pool, "SELECT count(*) FROM rm_events WHERE partition_key = 0"); n != 9 {
		t.Fatalf("partition 0 applied %d events, want the 9 before the poison event", n)
	}
	st, err := projection.Status(ctx, pool, "rm")
	if err != nil {
		t.Fatal(err)
	}
	ninth := count(t, pool, `SELECT global_position FROM esgen_events WHERE partition_hash % 2 = 0
		ORDER BY transaction_id, global_position OFFSET 8 LIMIT 1`)
	if got := st.Partitions[0].Checkpoint.GlobalPosition; st.Partitions[0].Key != 0 || got != ninth {
		t.Fatalf("partition 0 checkpoint at %d, want %d (the event before the poison one at %d)", got, ninth, poisonPos)
	}
	// Fixed and restarted, it continues.
	w0 = startWorker(t, "w0-fixed", url, "TOTAL_PARTITIONS=2", "PARTITION_KEY=0")
	waitApplied(t, pool, time.Minute, allAlive(w0, w1))
	for _, p := range []*proc{w0, w1} {
		if code := p.stop(t); code != 0 {
			t.Errorf("%s exited with %d", p.name, code)
		}
	}
	checkReadModel(t, pool)
}

// SIGTERM while a batch is in hand: the worker finishes and commits it, then exits 0.
func TestSIGTERMFinishesBatchInHand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newReadModelDB(t)
	appendN(t, pool, "agg", 100, 1)
	w := startWorker(t, "slow", withAppName(t, url, "worker-slow"), "BATCH_SIZE=20", "TESTWORKER_SLEEP=20ms")
	// Inside a batch: a transaction of the worker's that has written the handler's rows
	// (other transactions of the worker take an id too: its layout, its registration).
	waitFor(t, time.Minute, "the worker inside a batch", func() bool {
		return count(t, pool, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'worker-slow'
			AND backend_xid IS NOT NULL AND state <> 'idle' AND query LIKE 'INSERT INTO rm\_%'`) > 0
	})
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := w.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, w.Output())
	}
	st, err := projection.Status(ctx, pool, "rm")
	if err != nil {
		t.Fatal(err)
	}
	applied := count(t, pool, "SELECT count(*) FROM rm_events")
	if applied == 0 || applied%20 != 0 || st.Partitions[0].EventsHandled != applied || applied == 100 {
		t.Fatalf("after SIGTERM: %d applied, checkpoint counts %d; want whole batches of 20, not all 100",
			applied, st.Partitions[0].EventsHandled)
	}
	t.Logf("SIGTERM in a batch: %d events applied (whole batches), worker exited 0", applied)
}
