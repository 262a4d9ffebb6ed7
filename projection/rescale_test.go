package projection_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/esgen-dev/esgen/projection"
)

// In one process (so -race covers it): 4 partitions of which only 0 and 1 ran, then
// 2, 3, 1 and back to 4, each on purpose (Config.Rescale), with appends in between:
// every event once, the old layout's runner fenced, a different count refused without
// Rescale.
func TestRescaleInProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newReadModelDB(t)
	log, _ := testLogger(t)
	p := projection.Projection{Name: "rm", Partitioned: true, Handler: readModelHandler(nil)}
	cfg := func(total int, keys ...int) projection.Config {
		return projection.Config{TotalPartitions: total, Partitions: keys, BatchSize: 7, Logger: log, RetryBackoff: time.Millisecond}
	}
	appendN(t, pool, "a", 30, 4)
	// Partitions 0 and 1 of 4 catch up; 2 and 3 never run.
	r := start(t, pool, p, cfg(4, 0, 1))
	waitFor(t, time.Minute, "partitions 0 and 1 of 4 caught up", func() bool {
		return count(t, pool, "SELECT count(*) FROM rm_events") == count(t, pool, "SELECT count(*) FROM esgen_events WHERE partition_hash % 4 IN (0, 1)")
	})
	// Partition 0 of 4 keeps running across the switch.
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	oldLog, oldBuf := testLogger(t)
	oldCfg := cfg(4, 0)
	oldCfg.Logger = oldLog
	old := start(t, pool, p, oldCfg)
	waitFor(t, time.Minute, "the old-layout runner to start", func() bool { return strings.Contains(oldBuf.String(), "partition started") })

	appendN(t, pool, "b", 10, 2)
	// A different count without Rescale is refused, and changes nothing.
	var cm *projection.CountMismatchError
	if err := projection.Run(ctx, pool, p, cfg(2)); !errors.As(err, &cm) || cm.Current != 4 || cm.Count != 2 ||
		!strings.Contains(err.Error(), "TOTAL_PARTITIONS=2 does not match the live layout: the projection runs with 4 partitions (generation 1; counts used: 4)") ||
		!strings.Contains(err.Error(), "esgen rescale rm 2") {
		t.Fatalf("a count of 2 without Rescale: got %v", err)
	}
	if st, err := projection.Status(ctx, pool, "rm"); err != nil || st.PartitionCount != 4 || st.Generation != 1 {
		t.Fatalf("after a refused count: %+v, %v", st, err)
	}
	c2 := cfg(2)
	c2.Rescale = true
	two := start(t, pool, p, c2)
	select {
	case err := <-old.done:
		old.done <- err
		var lc *projection.LayoutChangedError
		if !errors.As(err, &lc) || lc.From != 4 || lc.To != 2 ||
			!strings.Contains(err.Error(), "partition count changed from 4 to 2 (generation 2); restart this worker with TOTAL_PARTITIONS=2") {
			t.Fatalf("old-layout runner returned %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the runner of the old layout was not fenced off")
	}
	st, err := projection.Status(ctx, pool, "rm")
	if err != nil {
		t.Fatal(err)
	}
	if st.PartitionCount != 2 || st.Generation != 2 || st.PreviousCount != 4 {
		t.Errorf("status after the switch: %+v", st)
	}
	waitApplied(t, pool, time.Minute, nil)
	if err := two.stop(t); err != nil {
		t.Fatal(err)
	}
	checkReadModel(t, pool)

	for _, total := range []int{3, 1} {
		appendN(t, pool, "c"+string(rune('0'+total)), 10, 2)
		c := cfg(total)
		c.Rescale = true
		r := start(t, pool, p, c)
		waitApplied(t, pool, time.Minute, nil)
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
		checkReadModel(t, pool)
	}

	// 4 was used before: refused unless asked for.
	err = projection.Run(ctx, pool, p, cfg(4))
	if !errors.As(err, &cm) || !strings.Contains(err.Error(), "the projection runs with 1 partitions (generation 4; counts used: 4 → 2 → 3 → 1) (4 is a count used before") {
		t.Fatalf("outdated count: got %v", err)
	}
	appendN(t, pool, "d", 10, 1)
	c4 := cfg(4)
	c4.Rescale = true
	r = start(t, pool, p, c4)
	waitApplied(t, pool, time.Minute, nil)
	waitFor(t, time.Minute, "the retired layouts to be carried over", func() bool {
		st, err := projection.Status(ctx, pool, "rm")
		return err == nil && !st.Rescaling()
	})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	checkReadModel(t, pool)
	st, err = projection.Status(ctx, pool, "rm")
	if err != nil {
		t.Fatal(err)
	}
	if st.PartitionCount != 4 || st.Generation != 5 || len(st.Partitions) != 4 || len(st.Retired) != 0 ||
		!equalInts(st.CountsUsed, []int{4, 2, 3, 1}) {
		t.Errorf("final status: %+v", st)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestStatusAndReset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newReadModelDB(t)
	if _, err := projection.Status(ctx, pool, "rm"); !errors.Is(err, projection.ErrNotFound) {
		t.Fatalf("status of an unknown projection: %v", err)
	}
	appendN(t, pool, "a", 10, 2)
	log, _ := testLogger(t)
	p := projection.Projection{Name: "rm", Partitioned: true, Handler: readModelHandler(nil), EventTypes: []string{"Tick"}}
	r := start(t, pool, p, projection.Config{TotalPartitions: 2, Partitions: []int{0}, Logger: log})
	want := count(t, pool, "SELECT count(*) FROM esgen_events WHERE partition_hash % 2 = 0")
	waitFor(t, time.Minute, "partition 0 caught up", func() bool { return count(t, pool, "SELECT count(*) FROM rm_events") == want })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	st, err := projection.Status(ctx, pool, "rm")
	if err != nil {
		t.Fatal(err)
	}
	lag1 := count(t, pool, "SELECT count(*) FROM esgen_events WHERE partition_hash % 2 = 1")
	p0, p1 := st.Partitions[0], st.Partitions[1]
	if st.PartitionCount != 2 || p0.Key != 0 || p0.Lag != 0 || p0.EventsHandled != want || p1.Lag != lag1 || p1.EventsHandled != 0 ||
		st.Lag != lag1 || st.Head != count(t, pool, "SELECT max(global_position) FROM esgen_events") ||
		!equalStrings(st.EventTypes, []string{"Tick"}) || p0.LastMoved.IsZero() {
		t.Errorf("status: %+v", st)
	}
	all, err := projection.StatusAll(ctx, pool)
	if err != nil || len(all) != 1 || all[0].Name != "rm" {
		t.Fatalf("StatusAll: %v %+v", err, all)
	}
	// Reset: the checkpoints and the layout go; clear the read model in the same
	// transaction; the next start rebuilds everything.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := projection.Reset(ctx, tx, "rm"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "TRUNCATE rm_events, rm_seq"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := projection.Reset(ctx, pool, "rm"); !errors.Is(err, projection.ErrNotFound) {
		t.Fatalf("second reset: %v", err)
	}
	r = start(t, pool, p, projection.Config{TotalPartitions: 3, Logger: log})
	waitApplied(t, pool, time.Minute, nil)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	checkReadModel(t, pool)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
