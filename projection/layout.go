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

// MaxPartitions is the largest partition count a projection may have. Every partition
// needs a worker running it (one that never runs holds the others' low watermark, and
// so the clean-up of a retired layout, back), and each running partition holds up to
// two connections of a server whose max_connections is in the hundreds; a count that
// cannot be run at once gains nothing and only multiplies checkpoints. 1024 leaves room
// for clusters of poolers in front of several servers, and keeps a typo such as
// TOTAL_PARTITIONS=100000 from being taken for a layout.
const MaxPartitions = 1024

// CountMismatchError refuses to start a worker whose partition count differs from the
// count the projection runs with: a typo or a stale deployment must not change the
// layout under the running workers. The count changes only on purpose: esgen rescale,
// [Rescale] or [Config.Rescale].
type CountMismatchError struct {
	Projection string
	Count      int   // the count asked for
	Current    int   // the count in force
	Generation int64 // the generation in force
	Used       []int // every count used, oldest first
}

func (e *CountMismatchError) Error() string {
	used := make([]string, len(e.Used))
	for i, c := range e.Used {
		used[i] = fmt.Sprint(c)
	}
	before := ""
	if slices.Contains(e.Used, e.Count) {
		before = fmt.Sprintf(" (%d is a count used before: most likely a stale deployment)", e.Count)
	}
	return fmt.Sprintf("projection %s: TOTAL_PARTITIONS=%d does not match the live layout: the projection runs with %d partitions (generation %d; counts used: %s)%s; start this worker with TOTAL_PARTITIONS=%d, or change the count on purpose with esgen rescale %s %d (or --rescale on one worker)",
		e.Projection, e.Count, e.Current, e.Generation, strings.Join(used, " → "), before, e.Current, e.Projection, e.Count)
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

// ensureLayout creates the projection on first start, or checks that its layout has
// cfg.TotalPartitions partitions; with cfg.Rescale it switches the layout to that
// count. It returns the generation in force.
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
	if int(proj.PartitionCount) != total && !cfg.Rescale {
		return 0, mismatch(proj, total)
	}
	if err := queries.SetProjectionEventTypes(ctx, tx, dbsqlc.SetProjectionEventTypesParams{Name: p.Name, EventTypes: types}); err != nil {
		return 0, fmt.Errorf("projection %s: record event types: %w", p.Name, err)
	}
	if int(proj.PartitionCount) == total {
		return proj.Generation, commit(ctx, tx, p.Name)
	}
	ch, err := switchLayout(ctx, tx, proj, total, start)
	if err != nil {
		return 0, err
	}
	ch = logChange(ctx, pool, ch, p.Name, log)
	if cfg.onLayoutChange != nil {
		cfg.onLayoutChange(ch)
	}
	return ch.Generation, nil
}

func mismatch(proj dbsqlc.EsgenProjection, total int) *CountMismatchError {
	used := make([]int, len(proj.CountsUsed))
	for i, c := range proj.CountsUsed {
		used[i] = int(c)
	}
	return &CountMismatchError{Projection: proj.Name, Count: total, Current: int(proj.PartitionCount), Generation: proj.Generation, Used: used}
}

// Beginner is what [Rescale], [RequestRebuild] and [AcceptSkip] need of a connection:
// *pgx.Conn and *pgxpool.Pool have it.
type Beginner interface {
	DBTX
	Begin(ctx context.Context) (pgx.Tx, error)
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Rescale changes the partition count of a projection to total on purpose (what esgen
// rescale does), in one short transaction, as described in the package documentation:
// every partition of the new layout starts at the low watermark of the old one, and
// workers still running the old count stop at their next batch with a
// [*LayoutChangedError]. It returns [ErrNotFound] for a projection that never ran, and
// a zero LayoutChange (Generation 0) when the projection already has total partitions.
func Rescale(ctx context.Context, db Beginner, name string, total int) (LayoutChange, error) {
	if err := checkCount(total); err != nil {
		return LayoutChange{}, fmt.Errorf("projection %s: %w", name, err)
	}
	start := time.Now()
	tx, err := db.Begin(ctx)
	if err != nil {
		return LayoutChange{}, fmt.Errorf("projection %s: begin: %w", name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	proj, err := queries.LockProjection(ctx, tx, name)
	if errors.Is(err, pgx.ErrNoRows) {
		return LayoutChange{}, fmt.Errorf("projection %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return LayoutChange{}, fmt.Errorf("projection %s: lock: %w", name, eventstore.MissingTables(err))
	}
	if int(proj.PartitionCount) == total {
		return LayoutChange{From: total, To: total}, nil
	}
	ch, err := switchLayout(ctx, tx, proj, total, start)
	if err != nil {
		return LayoutChange{}, err
	}
	ch.AlreadyHandled = countHandledAfter(ctx, db, ch.Watermark, name)
	return ch, nil
}

// checkCount checks a partition count against the bounds.
func checkCount(total int) error {
	if total < 1 || total > MaxPartitions {
		return fmt.Errorf("partition count %d is out of range: use 1..%d", total, MaxPartitions)
	}
	return nil
}

// switchLayout changes the layout locked in tx (proj) to total partitions and commits:
// it waits for the batches in flight on the old layout (they hold their checkpoint's
// row lock), retires its checkpoints and starts every partition of the new layout at
// their meet. Its cost is linear in the old and the new count.
func switchLayout(ctx context.Context, tx pgx.Tx, proj dbsqlc.EsgenProjection, total int, start time.Time) (LayoutChange, error) {
	name := proj.Name
	old, err := queries.LockLayoutCheckpoints(ctx, tx, dbsqlc.LockLayoutCheckpointsParams{Projection: name, Generation: proj.Generation})
	if err != nil {
		return LayoutChange{}, fmt.Errorf("projection %s: lock the checkpoints of generation %d: %w", name, proj.Generation, err)
	}
	if len(old) == 0 {
		return LayoutChange{}, fmt.Errorf("projection %s: generation %d has no live checkpoints: a rebuild (esgen rebuild) waits for a projector to start it; start one with the current count, %d, or with --rescale to change the count as well (or run esgen reset %s)", name, proj.Generation, proj.PartitionCount, name)
	}
	cursors := make([]eventstore.Cursor, len(old))
	for i, c := range old {
		cursors[i] = cursorOf(c)
	}
	w := eventstore.Meet(cursors...)
	if _, err := queries.RetireLayout(ctx, tx, dbsqlc.RetireLayoutParams{Projection: name, Generation: proj.Generation}); err != nil {
		return LayoutChange{}, fmt.Errorf("projection %s: retire generation %d: %w", name, proj.Generation, err)
	}
	gen := proj.Generation + 1
	if err := queries.SwitchLayout(ctx, tx, dbsqlc.SwitchLayoutParams{Name: name, PartitionCount: int32(total), Generation: gen}); err != nil {
		return LayoutChange{}, fmt.Errorf("projection %s: switch to generation %d: %w", name, gen, err)
	}
	if err := insertLayout(ctx, tx, name, gen, total, w); err != nil {
		return LayoutChange{}, err
	}
	if _, err := deleteFinishedLayouts(ctx, tx, name); err != nil {
		return LayoutChange{}, err
	}
	if err := commit(ctx, tx, name); err != nil {
		return LayoutChange{}, err
	}
	return LayoutChange{From: int(proj.PartitionCount), To: total, Generation: gen, Watermark: w, AlreadyHandled: -1, Took: time.Since(start)}, nil
}

// countHandledAfter counts, outside the switch transaction and for the log only, how
// many events after the watermark the new layout will scan and skip (-1 if it cannot
// be counted).
func countHandledAfter(ctx context.Context, db DBTX, w eventstore.Cursor, name string) int64 {
	var handled int64
	count := readsql.CountHandledAfter(w.TransactionID, w.GlobalPosition, name)
	if err := db.QueryRow(ctx, count.SQL, count.Args...).Scan(&handled); err != nil {
		return -1
	}
	return handled
}

func logChange(ctx context.Context, db DBTX, ch LayoutChange, name string, log *slog.Logger) LayoutChange {
	ch.AlreadyHandled = countHandledAfter(ctx, db, ch.Watermark, name)
	log.Info("partition count changed", "from", ch.From, "to", ch.To, "generation", ch.Generation,
		"watermark", ch.Watermark.String(), "already_handled_after_watermark", ch.AlreadyHandled, "took_ms", float64(ch.Took.Microseconds())/1000)
	return ch
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
