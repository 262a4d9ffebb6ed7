package projection_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/generated/dbsqlc"
	"github.com/esgen-dev/esgen/projection"
)

// The checkpoint update is a compare-and-set: a worker that read the checkpoint before
// another worker moved it cannot commit its batch, and neither can a worker of a
// retired layout.
func TestCompareAndSetFencesStaleOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newReadModelDB(t)
	appendN(t, pool, "a", 4, 1)
	// Create the projection (partition 0 of 2 runs, 1 never does) and let it catch up.
	h := projection.HandlerFunc(func(context.Context, pgx.Tx, *eventstore.Event) error { return nil })
	p := projection.Projection{Name: "fence", Partitioned: true, Handler: h}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := start(t, pool, p, projection.Config{TotalPartitions: 2, Partitions: []int{0}, Logger: quiet})
	waitFor(t, 30*time.Second, "partition 0 to catch up", func() bool {
		st, err := projection.Status(ctx, pool, "fence")
		return err == nil && st.Partitions[0].Lag == 0 && st.Partitions[0].Checkpoint.GlobalPosition > 0
	})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	q := dbsqlc.New()
	cps, err := q.ListCheckpoints(ctx, pool, "fence")
	if err != nil || len(cps) != 2 || cps[0].PartitionKey != 0 {
		t.Fatal(err, cps)
	}
	stale := cps[0] // what a slow worker read
	advance := func(from dbsqlc.EsgenCheckpoint, gen int64, to int64) int64 {
		n, err := q.AdvanceCheckpoint(ctx, pool, dbsqlc.AdvanceCheckpointParams{
			NewTransactionID: from.LastTransactionID, NewPosition: to,
			NewHoleTransactionIds: from.HoleTransactionIds, NewHolePositions: from.HolePositions, Handled: 1,
			Projection: "fence", Generation: gen, PartitionKey: 0,
			OldTransactionID: from.LastTransactionID, OldPosition: from.LastPosition,
			OldHoleTransactionIds: from.HoleTransactionIds, OldHolePositions: from.HolePositions,
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Another worker moves it first; the stale one is fenced.
	if n := advance(stale, 1, stale.LastPosition+1); n != 1 {
		t.Fatalf("first owner: %d rows", n)
	}
	if n := advance(stale, 1, stale.LastPosition+2); n != 0 {
		t.Fatalf("stale owner moved the checkpoint (%d rows)", n)
	}
	// A wrong generation never matches.
	cur, _ := q.ListCheckpoints(ctx, pool, "fence")
	if n := advance(cur[0], 2, cur[0].LastPosition+1); n != 0 {
		t.Fatalf("another generation moved the checkpoint (%d rows)", n)
	}
	// After a switch to 3 partitions (only 0 runs, so the carry-over cannot finish) the
	// old checkpoints are retired and frozen.
	r = start(t, pool, p, projection.Config{TotalPartitions: 3, Partitions: []int{0}, Logger: quiet, Rescale: true})
	waitFor(t, 30*time.Second, "the switch to 3 partitions", func() bool {
		st, err := projection.Status(ctx, pool, "fence")
		return err == nil && st.PartitionCount == 3
	})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	cps, _ = q.ListCheckpoints(ctx, pool, "fence")
	retired := 0
	for _, c := range cps {
		if c.Generation == 1 {
			retired++
			if !c.Retired {
				t.Fatalf("generation 1 not retired: %+v", c)
			}
			if n := advance(c, 1, c.LastPosition+1); n != 0 {
				t.Fatalf("a retired checkpoint moved (%d rows)", n)
			}
		}
	}
	if retired != 2 {
		t.Fatalf("%d retired checkpoints of generation 1, want 2: %+v", retired, cps)
	}
}
