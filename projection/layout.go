package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/generated/dbsqlc"
	"github.com/esgen-dev/esgen/internal/readsql"
)

// LayoutChangedError stops a worker whose partition layout was replaced: another
// worker started with a different partition count.
type LayoutChangedError struct {
	Projection string
	From, To   int   // the worker's count and the count in force
	Generation int64 // the generation in force
}

func (e *LayoutChangedError) Error() string {
	return fmt.Sprintf("projection %s: partition count changed from %d to %d (generation %d); restart this worker with TOTAL_PARTITIONS=%d",
		e.Projection, e.From, e.To, e.Generation, e.To)
}

// OutdatedCountError refuses to start a worker with a partition count that the
// projection used before the one in force: most likely a stale deployment.
type OutdatedCountError struct {
	Projection string
	Count      int   // the count asked for
	Current    int   // the count in force
	Generation int64 // the generation in force
	Used       []int // every count used, oldest first
}

func (e *OutdatedCountError) Error() string {
	used := make([]string, len(e.Used))
	for i, c := range e.Used {
		used[i] = fmt.Sprint(c)
	}
	return fmt.Sprintf("projection %s: TOTAL_PARTITIONS=%d is outdated: the projection runs with %d partitions now (generation %d; counts used: %s); start this worker with TOTAL_PARTITIONS=%d, or pass --rescale (Config.Rescale) to switch back to %d partitions on purpose",
		e.Projection, e.Count, e.Current, e.Generation, strings.Join(used, " → "), e.Current, e.Count)
}

// ErrNotFound is returned for a projection that has no row in esgen_projections.
var ErrNotFound = errors.New("projection not found")

// LayoutChange describes a change of the partition count, as done by [Run].
type LayoutChange struct {
	From, To   int
	Generation int64
	// Watermark is where every partition of the new layout starts: the meet of the
	// old layout's checkpoints (eventstore.Meet), the oldest of their positions with
	// the holes below it.
	Watermark eventstore.Cursor
	// AlreadyHandled is the number of events after the watermark that the retired
	// layouts handled: the new layout scans them and skips them in SQL. Counted right
	// after the switch (-1 when the count failed).
	AlreadyHandled int64
	// Took is how long the switch transaction ran (from BEGIN to COMMIT), including
	// the wait for batches in flight on the old layout.
	Took time.Duration
}

// ensureLayout creates the projection on first start, or switches its layout to
// cfg.TotalPartitions, and returns the generation in force.
func ensureLayout(ctx context.Context, pool *pgxpool.Pool, p Projection, cfg Config, log *slog.Logger) (int64, error) {
	total := cfg.TotalPartitions
	types := p.EventTypes
	if types == nil {
		types = []string{}
	}
	start := time.Now()
	tx, err := pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("projection %s: begin: %w", p.Name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	created, err := queries.CreateProjection(ctx, tx, dbsqlc.CreateProjectionParams{
		Name: p.Name, PartitionCount: int32(total), CountsUsed: []int32{int32(total)}, EventTypes: types,
	})
	if err != nil {
		if err := eventstore.MissingTables(err); errors.Is(err, eventstore.ErrTablesMissing) {
			return 0, fmt.Errorf("projection %s: %w", p.Name, err)
		}
		return 0, fmt.Errorf("projection %s: create: %w", p.Name, err)
	}
	if created == 1 {
		if err := insertLayout(ctx, tx, p.Name, 1, total, eventstore.Cursor{}); err != nil {
			return 0, err
		}
		if err := tx.Commit(ctx); err != nil {
			return 0, fmt.Errorf("projection %s: commit: %w", p.Name, err)
		}
		log.Info("projection created", "total_partitions", total, "generation", 1)
		return 1, nil
	}
	proj, err := queries.LockProjection(ctx, tx, p.Name)
	if err != nil {
		return 0, fmt.Errorf("projection %s: lock: %w", p.Name, err)
	}
	if err := queries.SetProjectionEventTypes(ctx, tx, dbsqlc.SetProjectionEventTypesParams{Name: p.Name, EventTypes: types}); err != nil {
		return 0, fmt.Errorf("projection %s: record event types: %w", p.Name, err)
	}
	if int(proj.PartitionCount) == total {
		return proj.Generation, commit(ctx, tx, p.Name)
	}
	if slices.Contains(proj.CountsUsed, int32(total)) && !cfg.Rescale {
		used := make([]int, len(proj.CountsUsed))
		for i, c := range proj.CountsUsed {
			used[i] = int(c)
		}
		return 0, &OutdatedCountError{Projection: p.Name, Count: total, Current: int(proj.PartitionCount), Generation: proj.Generation, Used: used}
	}

	// Switch: wait for the batches in flight on the old layout (they hold their
	// checkpoint's row lock), then retire its checkpoints and start every partition of
	// the new layout at the oldest of them.
	old, err := queries.LockLayoutCheckpoints(ctx, tx, dbsqlc.LockLayoutCheckpointsParams{Projection: p.Name, Generation: proj.Generation})
	if err != nil {
		return 0, fmt.Errorf("projection %s: lock the checkpoints of generation %d: %w", p.Name, proj.Generation, err)
	}
	if len(old) == 0 {
		return 0, fmt.Errorf("projection %s: generation %d has no live checkpoints; run esgen reset %s to rebuild it", p.Name, proj.Generation, p.Name)
	}
	cursors := make([]eventstore.Cursor, len(old))
	for i, c := range old {
		cursors[i] = cursorOf(c)
	}
	w := eventstore.Meet(cursors...)
	if _, err := queries.RetireLayout(ctx, tx, dbsqlc.RetireLayoutParams{Projection: p.Name, Generation: proj.Generation}); err != nil {
		return 0, fmt.Errorf("projection %s: retire generation %d: %w", p.Name, proj.Generation, err)
	}
	gen := proj.Generation + 1
	if err := queries.SwitchLayout(ctx, tx, dbsqlc.SwitchLayoutParams{Name: p.Name, PartitionCount: int32(total), Generation: gen}); err != nil {
		return 0, fmt.Errorf("projection %s: switch to generation %d: %w", p.Name, gen, err)
	}
	if err := insertLayout(ctx, tx, p.Name, gen, total, w); err != nil {
		return 0, err
	}
	if _, err := deleteFinishedLayouts(ctx, tx, p.Name); err != nil {
		return 0, err
	}
	if err := commit(ctx, tx, p.Name); err != nil {
		return 0, err
	}
	took := time.Since(start)
	// For the log only, outside the switch transaction: how many events after W the
	// new layout will scan and skip. (-1 if it cannot be counted.)
	var handled int64
	count := readsql.CountHandledAfter(w.TransactionID, w.GlobalPosition, p.Name)
	if err := pool.QueryRow(ctx, count.SQL, count.Args...).Scan(&handled); err != nil {
		handled = -1
	}
	ch := LayoutChange{From: int(proj.PartitionCount), To: total, Generation: gen, Watermark: w, AlreadyHandled: handled, Took: took}
	log.Info("partition count changed", "from", ch.From, "to", ch.To, "generation", gen,
		"watermark", w.String(), "already_handled_after_watermark", handled, "took_ms", float64(ch.Took.Microseconds())/1000)
	if cfg.onLayoutChange != nil {
		cfg.onLayoutChange(ch)
	}
	return gen, nil
}

func insertLayout(ctx context.Context, tx pgx.Tx, name string, gen int64, total int, at eventstore.Cursor) error {
	keys := make([]int32, total)
	for i := range keys {
		keys[i] = int32(i)
	}
	txs, positions := at.HoleArrays()
	err := queries.InsertLayoutCheckpoints(ctx, tx, dbsqlc.InsertLayoutCheckpointsParams{
		Projection: name, Generation: gen, PartitionCount: int32(total),
		LastTransactionID: xid8(at.TransactionID), LastPosition: at.GlobalPosition,
		HoleTransactionIds: xid8s(txs), HolePositions: positions, PartitionKeys: keys,
	})
	if err != nil {
		return fmt.Errorf("projection %s: create the checkpoints of generation %d: %w", name, gen, err)
	}
	return nil
}

func commit(ctx context.Context, tx pgx.Tx, name string) error {
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("projection %s: commit: %w", name, err)
	}
	return nil
}

func xid8(v uint64) pgtype.Uint64 { return pgtype.Uint64{Uint64: v, Valid: true} }

func xid8s(v []uint64) []pgtype.Uint64 {
	out := make([]pgtype.Uint64, len(v))
	for i, x := range v {
		out[i] = xid8(x)
	}
	return out
}

// cursorOf is a checkpoint's cursor: its position and holes.
func cursorOf(c dbsqlc.EsgenCheckpoint) eventstore.Cursor {
	txs := make([]uint64, len(c.HoleTransactionIds))
	for i, x := range c.HoleTransactionIds {
		txs[i] = x.Uint64
	}
	cur, err := eventstore.CursorFromArrays(eventstore.Position{TransactionID: c.LastTransactionID.Uint64, GlobalPosition: c.LastPosition}, txs, c.HolePositions)
	if err != nil { // the table's check constraint keeps the arrays the same length
		panic(err)
	}
	return cur
}

// deleteFinishedLayouts deletes the checkpoints of every retired layout of a
// projection that all live checkpoints have passed (eventstore.Passed): no live
// partition can read an event that such a layout handled. It returns how many
// checkpoints it deleted.
func deleteFinishedLayouts(ctx context.Context, db DBTX, name string) (int64, error) {
	cps, err := queries.ListCheckpoints(ctx, db, name)
	if err != nil {
		return 0, fmt.Errorf("projection %s: list checkpoints: %w", name, err)
	}
	var live []eventstore.Cursor
	retired := map[int64][]eventstore.Cursor{}
	for _, c := range cps {
		if c.Retired {
			retired[c.Generation] = append(retired[c.Generation], cursorOf(c))
		} else {
			live = append(live, cursorOf(c))
		}
	}
	if len(live) == 0 {
		return 0, nil
	}
	var deleted int64
	for gen, cs := range retired {
		if !eventstore.Passed(live, cs) {
			continue
		}
		n, err := queries.DeleteRetiredGeneration(ctx, db, dbsqlc.DeleteRetiredGenerationParams{Projection: name, Generation: gen})
		if err != nil {
			return deleted, fmt.Errorf("projection %s: delete retired generation %d: %w", name, gen, err)
		}
		deleted += n
	}
	return deleted, nil
}
