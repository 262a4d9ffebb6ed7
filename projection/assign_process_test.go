package projection_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/projection"
)

// leaseCheck records, at the commit of every batch (a deferred constraint trigger on
// the read model), each event committed by a worker that did not hold its partition's
// lease at that moment: a paused worker committing after another took over.
const leaseCheck = `
CREATE TABLE lease_violations (event_id uuid, worker text, partition_key integer, owner text);
CREATE FUNCTION rm_check_lease() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE o text;
BEGIN
    SELECT l.owner INTO o FROM esgen_partition_leases l
    JOIN esgen_projections p ON p.name = l.projection AND p.generation = l.generation
    WHERE l.projection = 'rm' AND l.partition_key = NEW.partition_key;
    IF o IS DISTINCT FROM NEW.worker THEN
        INSERT INTO lease_violations VALUES (NEW.event_id, NEW.worker, NEW.partition_key, o);
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER rm_lease AFTER INSERT ON rm_events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rm_check_lease();`

// leaseOwners returns the live owner of each partition of the layout in force ("" for
// a free or expired lease).
func leaseOwners(t testing.TB, pool *pgxpool.Pool) map[int]string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT l.partition_key,
		CASE WHEN l.owner IS NOT NULL AND l.expires_at > now() THEN l.owner ELSE '' END
		FROM esgen_partition_leases l JOIN esgen_projections p ON p.name = l.projection AND p.generation = l.generation
		WHERE l.projection = 'rm'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int]string{}
	for rows.Next() {
		var k int
		var o string
		if err := rows.Scan(&k, &o); err != nil {
			t.Fatal(err)
		}
		out[k] = o
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	return out
}

// partitionCounts is the number of events applied per partition.
func partitionCounts(t testing.TB, pool *pgxpool.Pool, total int) []int64 {
	t.Helper()
	out := make([]int64, total)
	rows, err := pool.Query(context.Background(), "SELECT partition_key, count(*) FROM rm_events GROUP BY 1")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k int
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		out[k] = n
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	return out
}

// Three auto-assigned worker processes share 8 partitions while writers append; one
// is SIGKILLed (its partitions move once its lease expires), a fourth joins (it gets
// its share), one gets SIGTERM (it hands over after its batch), one is paused past its
// lease (SIGSTOP) and resumed. Every partition progresses in every phase, no batch
// commits without its lease, and every event is applied exactly once, in order.
func TestAutoAssignWithProcesses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const total, ttl = 8, 2 * time.Second
	url, pool := newReadModelDB(t)
	if _, err := pool.Exec(ctx, leaseCheck); err != nil {
		t.Fatal(err)
	}
	auto := func(name string, extra ...string) *proc {
		env := append([]string{fmt.Sprintf("TOTAL_PARTITIONS=%d", total), "PARTITION_KEY=auto", "LEASE_TTL=" + ttl.String(),
			"WORKER_ID=" + name, "BATCH_SIZE=20", "TESTWORKER_SLEEP=1ms"}, extra...)
		return startWorker(t, name, withAppName(t, url, "worker-"+name), env...)
	}
	wctx, stopWriters := context.WithCancel(ctx)
	defer stopWriters()
	var w writers
	writersDone := make(chan struct{})
	go func() {
		defer close(writersDone)
		w.run(wctx, t, pool, 2, 1_000_000, 500, 10*time.Millisecond)
	}()

	// owned lists the partitions each live owner holds.
	owned := func() map[string][]int {
		by := map[string][]int{}
		for k, o := range leaseOwners(t, pool) {
			by[o] = append(by[o], k)
		}
		for _, ks := range by {
			slices.Sort(ks)
		}
		return by
	}
	// allHeldBy waits until every partition is held, each by one of names.
	allHeldBy := func(what string, names ...string) time.Duration {
		start := time.Now()
		waitFor(t, time.Minute, what, func() bool {
			os := leaseOwners(t, pool)
			if len(os) != total {
				return false
			}
			for _, o := range os {
				if !slices.Contains(names, o) {
					return false
				}
			}
			return true
		})
		return time.Since(start)
	}
	// progressed waits until every partition applied events since now.
	progressed := func(phase string) {
		before := partitionCounts(t, pool, total)
		waitFor(t, time.Minute, phase+": every partition progressing", func() bool {
			now := partitionCounts(t, pool, total)
			for k := range now {
				if now[k] <= before[k] {
					return false
				}
			}
			return true
		})
		t.Logf("%s: every partition progressed; owners %v", phase, owned())
	}
	a, b, c := auto("a"), auto("b"), auto("c")
	allHeldBy("the partitions shared by a, b and c", "a", "b", "c")
	waitFor(t, time.Minute, "a fair share each (3, 3, 2)", func() bool {
		by := owned()
		return len(by["a"]) == 3 && len(by["b"]) == 3 && len(by["c"]) == 2
	})
	progressed("start")
	// esgen status shows who holds which partition, since when, until when.
	out, errOut, code := esgen(t, url, "status", "rm")
	if code != 0 {
		t.Fatalf("esgen status: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"HOLDER", "SINCE", "LEASE EXPIRES", "workers: 3 registered", "    a  auto, started "} {
		if !strings.Contains(out, want) {
			t.Fatalf("esgen status lacks %q:\n%s", want, out)
		}
	}
	st, err := projection.Status(ctx, pool, "rm")
	if err != nil {
		t.Fatal(err)
	}
	for _, ps := range st.Partitions {
		if l := ps.Lease; l == nil || !l.Live || l.Owner == "" || l.Expires.Before(l.Since) {
			t.Fatalf("partition %d: lease %+v, want a live one with its owner", ps.Key, l)
		}
	}
	t.Logf("esgen status:\n%s", out)

	// SIGKILL a: its partitions move once its lease expires.
	killedAt := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 30*time.Second)
	allHeldBy("b and c to take over a's partitions", "b", "c")
	failover := time.Since(killedAt)
	progressed("after SIGKILL of a")

	// A fourth worker joins and gets its share.
	d := auto("d", "METRICS_ADDR=127.0.0.1:0")
	joinedAt := time.Now()
	waitFor(t, time.Minute, "d to get its fair share (b 3, c 3, d 2)", func() bool {
		by := owned()
		return len(by["b"]) == 3 && len(by["c"]) == 3 && len(by["d"]) == 2
	})
	rebalance := time.Since(joinedAt)
	progressed("after d joined")

	// SIGTERM b: it hands its partitions over after its batch.
	termAt := time.Now()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	allHeldBy("c and d to take over b's partitions", "c", "d")
	handover := time.Since(termAt)
	if code := b.wait(t, time.Minute); code != 0 {
		t.Fatalf("b exited with %d after SIGTERM:\n%s", code, tailLines(b.Output(), 10))
	}
	progressed("after SIGTERM of b")

	// SIGSTOP c in a batch (holding its checkpoint's lock) past its lease: d takes
	// everything over; then c resumes.
	cBefore := len(c.logLines("partition lost"))
	waitFor(t, time.Minute, "c inside a batch", func() bool {
		return count(t, pool, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'worker-c'
			AND backend_xid IS NOT NULL AND state <> 'idle'`) > 0
	})
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	allHeldBy("d to take over c's partitions while c is paused", "d")
	progressed("while c is paused")
	time.Sleep(ttl) // c stays paused well past its lease
	if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "c to notice it lost its partitions", func() bool { return len(c.logLines("partition lost")) > cBefore })
	waitFor(t, time.Minute, "c and d to share again (4, 4)", func() bool {
		by := owned()
		return len(by["c"]) == 4 && len(by["d"]) == 4
	})
	progressed("after c resumed")
	// d's metrics count its claims, the failovers (c's expired leases) and what it
	// gave back when c came back.
	m := scrapeMetrics(t, metricsAddr(t, d))
	claimed, _ := m.value("esgen_projection_assignments_total", "change", "claimed")
	released, _ := m.value("esgen_projection_assignments_total", "change", "released")
	failovers, _ := m.value("esgen_projection_failovers_total")
	held, _ := m.value("esgen_projection_partitions_owned")
	if claimed < 8 || released < 4 || failovers < 4 || held != 4 {
		t.Fatalf("d's metrics: claimed %v, released %v, failovers %v, owned %v", claimed, released, failovers, held)
	}
	if code, body := get(t, metricsAddr(t, d)+"/readyz"); code != 200 {
		t.Fatalf("d not ready: %s", body)
	}

	stopWriters()
	<-writersDone
	waitApplied(t, pool, 2*time.Minute, allAlive(c, d))
	for _, p := range []*proc{c, d} {
		if code := p.stop(t); code != 0 {
			t.Errorf("%s exited with %d after SIGTERM:\n%s", p.name, code, tailLines(p.Output(), 10))
		}
	}
	n := checkReadModel(t, pool)
	if v := count(t, pool, "SELECT count(*) FROM lease_violations"); v != 0 {
		rows, _ := pool.Query(ctx, "SELECT worker || ' wrote partition ' || partition_key || ' held by ' || coalesce(owner, 'nobody') FROM lease_violations LIMIT 5")
		var ex []string
		for rows.Next() {
			var s string
			_ = rows.Scan(&s)
			ex = append(ex, s)
		}
		rows.Close()
		t.Fatalf("%d events committed by a worker that did not hold the lease, e.g. %s", v, strings.Join(ex, "; "))
	}
	if left := count(t, pool, "SELECT count(*) FROM esgen_partition_leases WHERE owner IS NOT NULL"); left != 0 {
		t.Errorf("%d leases still held after every worker stopped", left)
	}
	lost := c.logLines("partition lost")
	t.Logf("%d events applied exactly once, in order, with no commit outside a lease; failover after SIGKILL (lease %s): %s; a joining worker had its share after %s; hand-over after SIGTERM: %s; c logged %d lost partitions after its pause (e.g. %v)",
		n, ttl, failover.Round(time.Millisecond), rebalance.Round(time.Millisecond), handover.Round(time.Millisecond), len(lost)-cBefore, lost[len(lost)-1]["reason"])
}

// The projector binary refuses, with exit code 2 and the message, an auto worker while
// a static one runs the projection, and a static one while an auto one runs it.
func TestMixedWorkersRefusedWithProcesses(t *testing.T) {
	t.Parallel()
	url, pool := newReadModelDB(t)
	registered := func(mode string) func() bool {
		return func() bool {
			return count(t, pool, "SELECT count(*) FROM esgen_workers WHERE projection = 'rm' AND mode = $1 AND expires_at > now()", mode) > 0
		}
	}
	static := startWorker(t, "static", url, "TOTAL_PARTITIONS=2", "PARTITION_KEY=0,1", "WORKER_ID=static")
	waitFor(t, time.Minute, "the static worker's registration", registered("static"))
	refused := startWorker(t, "auto", url, "TOTAL_PARTITIONS=2", "PARTITION_KEY=auto", "WORKER_ID=auto")
	if code := refused.wait(t, time.Minute); code != 2 ||
		!strings.Contains(refused.Output(), "cannot start a worker with PARTITION_KEY=auto: workers with static partition keys run it (static (keys 0,1)") {
		t.Fatalf("auto next to static: exit %d:\n%s", code, refused.Output())
	}
	if code := static.stop(t); code != 0 {
		t.Fatalf("static exited with %d", code)
	}
	auto := startWorker(t, "auto", url, "TOTAL_PARTITIONS=2", "PARTITION_KEY=auto", "WORKER_ID=auto")
	waitFor(t, time.Minute, "the auto worker's registration", registered("auto"))
	refused = startWorker(t, "static", url, "TOTAL_PARTITIONS=2", "PARTITION_KEY=1", "WORKER_ID=static")
	if code := refused.wait(t, time.Minute); code != 2 ||
		!strings.Contains(refused.Output(), "cannot start a worker with static partition keys: workers with PARTITION_KEY=auto run it (auto,") {
		t.Fatalf("static next to auto: exit %d:\n%s", code, refused.Output())
	}
	if code := auto.stop(t); code != 0 {
		t.Fatalf("auto exited with %d", code)
	}
}
