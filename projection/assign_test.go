package projection_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/esgen-dev/esgen/projection"
)

// Static and auto-assigned workers are never mixed on one projection: whichever kind
// runs, a worker of the other kind is refused at start with a message that says what
// to do, and the running ones go on. Once they stopped (their registration is deleted
// on the way out), the other kind may start.
func TestStaticAndAutoNotMixed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newReadModelDB(t)
	p := projection.Projection{Name: "rm", Partitioned: true, Handler: readModelHandler(nil)}
	registered := func(mode string) func() bool {
		return func() bool {
			return count(t, pool, "SELECT count(*) FROM esgen_workers WHERE projection = 'rm' AND mode = $1", mode) > 0
		}
	}
	refused := func(cfg projection.Config, want string) {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		err := projection.Run(rctx, pool, p, cfg)
		var ce *projection.AssignmentConflictError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Run(%+v) = %v, want an AssignmentConflictError saying %q", cfg, err, want)
		}
	}

	static := start(t, pool, p, projection.Config{TotalPartitions: 2, Partitions: []int{0, 1}, WorkerID: "static-1", PollInterval: 50 * time.Millisecond})
	waitFor(t, time.Minute, "the static worker's registration", registered("static"))
	refused(projection.Config{TotalPartitions: 2, AutoAssign: true, WorkerID: "auto-1"},
		"cannot start a worker with PARTITION_KEY=auto: workers with static partition keys run it (static-1 (keys 0,1), registered until ")
	// A second static worker with the same keys is allowed, as before.
	static2 := start(t, pool, p, projection.Config{TotalPartitions: 2, Partitions: []int{1}, WorkerID: "static-2", PollInterval: 50 * time.Millisecond})
	appendN(t, pool, "agg", 10, 2)
	waitApplied(t, pool, time.Minute, nil)
	for _, r := range []*running{static, static2} {
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
	}
	if registered("static")() {
		t.Fatal("the static workers' registrations stay after they stopped")
	}

	auto := start(t, pool, p, projection.Config{TotalPartitions: 2, AutoAssign: true, WorkerID: "auto-1", PollInterval: 50 * time.Millisecond})
	waitFor(t, time.Minute, "the auto worker to hold both partitions", func() bool {
		return count(t, pool, "SELECT count(*) FROM esgen_partition_leases WHERE owner = 'auto-1' AND expires_at > now()") == 2
	})
	refused(projection.Config{TotalPartitions: 2, Partitions: []int{0}, WorkerID: "static-3"},
		"cannot start a worker with static partition keys: workers with PARTITION_KEY=auto run it (auto-1, registered until ")
	appendN(t, pool, "late", 10, 1)
	waitApplied(t, pool, time.Minute, nil)
	if err := auto.stop(t); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, "SELECT count(*) FROM esgen_partition_leases WHERE owner IS NOT NULL"); n != 0 {
		t.Fatalf("%d leases held after the auto worker stopped", n)
	}
	checkReadModel(t, pool)
}

// Auto workers in one process: two share 4 partitions 2 and 2; when one stops, the
// other takes over its partitions after its batch (hand-over without waiting for the
// lease to expire); every event is applied once.
func TestAutoAssignHandOver(t *testing.T) {
	t.Parallel()
	_, pool := newReadModelDB(t)
	p := projection.Projection{Name: "rm", Partitioned: true, Handler: readModelHandler(nil)}
	cfg := func(id string) projection.Config {
		// A long lease: the hand-over must not wait for it.
		return projection.Config{TotalPartitions: 4, AutoAssign: true, WorkerID: id, LeaseTTL: time.Minute, PollInterval: 50 * time.Millisecond}
	}
	held := func(id string) int64 {
		return count(t, pool, "SELECT count(*) FROM esgen_partition_leases WHERE owner = $1 AND expires_at > now()", id)
	}
	a := start(t, pool, p, cfg("a"))
	waitFor(t, time.Minute, "a to hold every partition", func() bool { return held("a") == 4 })
	b := start(t, pool, p, cfg("b"))
	waitFor(t, time.Minute, "a and b to hold 2 each", func() bool { return held("a") == 2 && held("b") == 2 })
	appendN(t, pool, "agg", 20, 3)
	waitApplied(t, pool, time.Minute, nil)
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "b to take a's partitions over (well before the 1 minute lease would expire)", func() bool { return held("b") == 4 })
	appendN(t, pool, "late", 20, 1)
	waitApplied(t, pool, time.Minute, nil)
	if err := b.stop(t); err != nil {
		t.Fatal(err)
	}
	checkReadModel(t, pool)
	if n := count(t, pool, "SELECT count(DISTINCT partition_key) FROM rm_events"); n != 4 {
		t.Fatalf("events of %d partitions applied, want 4", n)
	}
}

// A change of the partition count stops auto workers as it stops static ones, with a
// LayoutChangedError; started again with the new count, they share the new layout.
func TestAutoAssignLayoutChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newReadModelDB(t)
	p := projection.Projection{Name: "rm", Partitioned: true, Handler: readModelHandler(nil)}
	cfg := projection.Config{TotalPartitions: 2, AutoAssign: true, WorkerID: "a", PollInterval: 50 * time.Millisecond}
	a := start(t, pool, p, cfg)
	appendN(t, pool, "agg", 10, 2)
	waitApplied(t, pool, time.Minute, nil)
	if _, err := projection.Rescale(ctx, pool, "rm", 3); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-a.done:
		a.done <- err
		var lc *projection.LayoutChangedError
		if !errors.As(err, &lc) || lc.To != 3 {
			t.Fatalf("after the rescale: %v, want a LayoutChangedError to 3", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the auto worker did not stop after the layout changed")
	}
	cfg.TotalPartitions = 3
	b := start(t, pool, p, cfg)
	waitFor(t, time.Minute, "the 3 leases of the new layout held", func() bool {
		return count(t, pool, `SELECT count(*) FROM esgen_partition_leases l JOIN esgen_projections p ON p.name = l.projection
			AND p.generation = l.generation WHERE l.owner = 'a' AND l.expires_at > now()`) == 3
	})
	if n := count(t, pool, "SELECT count(*) FROM esgen_partition_leases WHERE generation = 1"); n != 0 {
		t.Fatalf("%d leases of the old layout left", n)
	}
	appendN(t, pool, "late", 10, 1)
	waitApplied(t, pool, time.Minute, nil)
	if err := b.stop(t); err != nil {
		t.Fatal(err)
	}
	checkReadModel(t, pool)
}

// When the leases cannot be renewed for longer than the lease time (here: the workers'
// table is locked), the worker stops its partitions at their batch boundary; once it
// can renew again, it gives back what it held and claims its share again.
func TestAutoAssignStopsWhenRenewalFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newReadModelDB(t)
	log, buf := testLogger(t)
	p := projection.Projection{Name: "rm", Partitioned: true, Handler: readModelHandler(nil)}
	r := start(t, pool, p, projection.Config{TotalPartitions: 2, AutoAssign: true, WorkerID: "a", LeaseTTL: time.Second,
		PollInterval: 50 * time.Millisecond, Logger: log})
	held := func() int64 {
		return count(t, pool, "SELECT count(*) FROM esgen_partition_leases WHERE owner = 'a' AND expires_at > now()")
	}
	waitFor(t, time.Minute, "a to hold both partitions", func() bool { return held() == 2 })
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE esgen_workers IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the partitions to stop", func() bool {
		return strings.Count(buf.String(), `msg="partition lost"`) == 2 &&
			strings.Count(buf.String(), "the leases could not be renewed for longer than the lease time") == 2
	})
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "a to claim both partitions again", func() bool {
		return strings.Count(buf.String(), `msg="partition claimed"`) == 4 && held() == 2
	})
	appendN(t, pool, "agg", 10, 2)
	waitApplied(t, pool, time.Minute, nil)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	checkReadModel(t, pool)
}
