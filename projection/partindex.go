package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
)

// The partition index of a count n is an index on esgen_events
// ((partition_hash % n), transaction_id, global_position), named
// esgen_events_partitions_<n>. With it, each partition of n reads only its own rows, in
// commit order (readsql.PartitionRead.Literal): the n partitions read the stream once
// in total instead of n times.
//
// Run keeps it (unless Config.NoPartitionIndex): it builds the index of its count when
// the count is above 1 and no usable one exists, and drops the indexes of counts that
// projections used and no layout of any projection has any more (after the retired
// layouts of a count change are deleted). Both run CONCURRENTLY, outside any transaction, so appends and
// reads go on meanwhile, one maintainer at a time on the server (a session advisory
// lock); an index left invalid by a build that was cancelled or killed is dropped and
// built again. Workers read through the index once it is usable (they look every
// partitionIndexCheck), without a restart.

// partitionIndexPrefix begins the name of every partition index.
const partitionIndexPrefix = "esgen_events_partitions_"

// PartitionIndexName is the name of the partition index of a partition count.
func PartitionIndexName(count int) string {
	return partitionIndexPrefix + strconv.Itoa(count)
}

// partitionIndexLock is the session advisory lock (two-key form, so apart from the
// appends' one-key locks) held while the partition indexes are built or dropped.
const partitionIndexLock = "pg_try_advisory_lock(1702061925, 1)"
const partitionIndexUnlock = "pg_advisory_unlock(1702061925, 1)"

// partitionIndexCheck is how often a worker of a partitioned layout looks whether the
// partition index of its count is usable.
const partitionIndexCheck = 2 * time.Second

// EnsurePartitionIndex builds the partition index of count (see [Config.NoPartitionIndex])
// unless a usable index for it exists, and waits for the build; an invalid index of that
// name (from a build that did not finish) is dropped first. It waits for a build or drop
// by another process to finish first. It reports whether it built the index. Run does
// this by itself; it is exported for operators and tools that want the index in place
// before starting the workers.
func EnsurePartitionIndex(ctx context.Context, pool *pgxpool.Pool, count int) (bool, error) {
	if count <= 1 {
		return false, nil
	}
	built := false
	err := withPartitionIndexLock(ctx, pool, func(conn DBTX) error {
		var err error
		built, err = ensurePartitionIndex(ctx, conn, count)
		return err
	})
	return built, err
}

// EnsureRescaleIndex builds the partition index of total (as [EnsurePartitionIndex])
// for a projection that exists and runs with another count: what esgen rescale does
// before the switch, so that the new layout's workers read only their partitions from
// their first batch. It reports whether it built the index; for a projection that
// does not exist or already runs with total partitions it does nothing.
func EnsureRescaleIndex(ctx context.Context, pool *pgxpool.Pool, name string, total int) (bool, error) {
	proj, err := queries.GetProjection(ctx, pool, name)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("projection %s: look up the layout: %w", name, eventstore.MissingTables(err))
	}
	if int(proj.PartitionCount) == total {
		return false, nil
	}
	return EnsurePartitionIndex(ctx, pool, total)
}

// DropUnusedPartitionIndexes drops, concurrently, the partition indexes
// (esgen_events_partitions_<n>) of counts that projections used and that no layout of
// any projection has any more, live or retired (an index for a count that no
// projection used yet is kept: it may be built ahead of a change of the count). It
// returns the names it dropped.
func DropUnusedPartitionIndexes(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	var dropped []string
	err := withPartitionIndexLock(ctx, pool, func(conn DBTX) error {
		var err error
		dropped, err = dropUnusedPartitionIndexes(ctx, conn)
		return err
	})
	return dropped, err
}

// withPartitionIndexLock runs f on a pool connection that holds the maintainers' advisory
// lock (waiting for it). The connection is closed instead of being given back when the
// lock cannot be released.
func withPartitionIndexLock(ctx context.Context, pool *pgxpool.Pool, f func(DBTX) error) error {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("partition index: acquire a connection: %w", err)
	}
	defer c.Release()
	// Polled rather than waited for: a statement waiting for the lock would hold a
	// snapshot, which the holder's CREATE INDEX CONCURRENTLY waits for in turn.
	for {
		var locked bool
		if err := c.QueryRow(ctx, "SELECT "+partitionIndexLock).Scan(&locked); err != nil {
			_ = c.Conn().Close(context.WithoutCancel(ctx)) // the lock may have been granted
			return fmt.Errorf("partition index: wait for other maintainers: %w", err)
		}
		if locked {
			break
		}
		if !sleep(ctx, 500*time.Millisecond) {
			return ctx.Err()
		}
	}
	ferr := f(c)
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var released bool
	if err := c.QueryRow(uctx, "SELECT "+partitionIndexUnlock).Scan(&released); err != nil || !released {
		_ = c.Conn().Close(uctx) // ends the session and its lock
	}
	return ferr
}

func ensurePartitionIndex(ctx context.Context, conn DBTX, count int) (bool, error) {
	ok, err := queries.HasPartitionIndex(ctx, conn, int32(count))
	if err != nil {
		return false, fmt.Errorf("partition index for %d partitions: look up: %w", count, err)
	}
	if ok {
		return false, nil
	}
	name := PartitionIndexName(count)
	// An index of that name that is not usable is what a build that was cancelled or
	// killed leaves: it is kept up to date by every append (once ready) but never read.
	if _, err := conn.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+name); err != nil {
		return false, fmt.Errorf("partition index %s: drop the unfinished one: %w", name, err)
	}
	ddl := fmt.Sprintf("CREATE INDEX CONCURRENTLY %s ON esgen_events ((partition_hash %% %d), transaction_id, global_position)", name, count)
	if _, err := conn.Exec(ctx, ddl); err != nil {
		return false, fmt.Errorf("partition index %s: build: %w", name, err)
	}
	return true, nil
}

func dropUnusedPartitionIndexes(ctx context.Context, conn DBTX) ([]string, error) {
	idx, err := queries.PartitionIndexes(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("partition indexes: list: %w", err)
	}
	var dropped []string
	for _, i := range idx {
		n, err := strconv.Atoi(strings.TrimPrefix(i.Name, partitionIndexPrefix))
		if err != nil {
			continue
		}
		gone, err := queries.PartitionCountGone(ctx, conn, int32(n))
		if err != nil {
			return dropped, fmt.Errorf("partition index %s: look up its count: %w", i.Name, err)
		}
		if !gone {
			// In use (an unfinished one is replaced by the next build), or built for
			// a count not used yet (by an operator, before starting its workers).
			continue
		}
		if _, err := conn.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+i.Name); err != nil {
			return dropped, fmt.Errorf("partition index %s: drop: %w", i.Name, err)
		}
		dropped = append(dropped, i.Name)
	}
	return dropped, nil
}

// indexKeeper keeps the partition indexes for Run: it builds the index of Run's count
// at start and drops unused ones at start and whenever a worker deleted retired
// layouts, in the background, one pass at a time.
type indexKeeper struct {
	pool  *pgxpool.Pool
	count int
	log   *slog.Logger
	poke  chan struct{}
}

func newIndexKeeper(pool *pgxpool.Pool, count int, log *slog.Logger) *indexKeeper {
	return &indexKeeper{pool: pool, count: count, log: log, poke: make(chan struct{}, 1)}
}

// layoutsDeleted asks for a pass that drops the indexes no layout uses any more.
func (k *indexKeeper) layoutsDeleted() {
	if k == nil {
		return
	}
	select {
	case k.poke <- struct{}{}:
	default:
	}
}

// run keeps the indexes until ctx ends. A failed pass is logged and tried again at the
// next poke (a build also at the next start).
func (k *indexKeeper) run(ctx context.Context) {
	pass := func(build bool) {
		err := withPartitionIndexLock(ctx, k.pool, func(conn DBTX) error {
			if build && k.count > 1 {
				start := time.Now()
				built, err := ensurePartitionIndex(ctx, conn, k.count)
				if err != nil {
					return err
				}
				if built {
					k.log.Info("partition index built", "index", PartitionIndexName(k.count), "took_ms", time.Since(start).Milliseconds())
				}
			}
			dropped, err := dropUnusedPartitionIndexes(ctx, conn)
			for _, name := range dropped {
				k.log.Info("partition index dropped: no layout has its count any more", "index", name)
			}
			return err
		})
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			k.log.Warn("could not keep the partition indexes", "error", err)
		}
	}
	pass(true)
	for {
		select {
		case <-ctx.Done():
			return
		case <-k.poke:
			pass(false)
		}
	}
}
