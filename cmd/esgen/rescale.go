package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/projection"
)

func init() {
	register("rescale", "change a projection's partition count on purpose", runRescale)
}

func runRescale(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("rescale", fmt.Sprintf(`usage: esgen rescale <projection> <count> [--database=URL]

Changes the partition count of a projection to count (1..%d) in one short
transaction: every partition of the new layout starts where the old layout left
off, nothing is handled twice or skipped. Workers still running the old count stop
at their next batch (exit 1) saying to restart with the new count; start a worker
for every key 0..count-1 with TOTAL_PARTITIONS=count. Workers started with a count
that differs from the projection's refuse to start (exit 2) unless --rescale.
Before the switch it builds the partition index of the new count (CREATE INDEX
CONCURRENTLY, as workers would), so that the new layout's workers read only their
own partitions from their first batch.
See docs/projections.md, "Changing the partition count".`, projection.MaxPartitions), stdout)
	db := databaseFlag(fs)
	noIndex := fs.Bool("no-partition-index", false, "do not build the partition index of the new count before the switch")
	rest, err := fs.parseInterspersed(args)
	if err != nil {
		return err
	}
	if len(rest) != 2 {
		return usageError{errors.New("name a projection and the new count: esgen rescale <projection> <count>")}
	}
	name := rest[0]
	total, err := strconv.Atoi(rest[1])
	if err != nil || total < 1 || total > projection.MaxPartitions {
		return usageError{fmt.Errorf("%q is not a partition count: use a whole number from 1 to %d", rest[1], projection.MaxPartitions)}
	}
	conn, err := connect(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if !*noIndex && total > 1 {
		if err := buildPartitionIndex(ctx, *db, name, total, stdout); err != nil {
			return err
		}
	}
	ch, err := projection.Rescale(ctx, conn, name, total)
	if errors.Is(err, projection.ErrNotFound) {
		return fmt.Errorf("no projection %q: it appears once its first worker has started (with TOTAL_PARTITIONS=%d, it starts with that count)", name, total)
	}
	if err != nil {
		return err
	}
	if ch.Generation == 0 {
		fmt.Fprintf(stdout, "esgen rescale: projection %s runs with %d partitions already; nothing changed\n", name, total)
		return nil
	}
	fmt.Fprintf(stdout, "esgen rescale: projection %s: partition count changed from %d to %d (generation %d) in %.1f ms\n",
		name, ch.From, ch.To, ch.Generation, float64(ch.Took.Microseconds())/1000)
	fmt.Fprintf(stdout, "  every new partition starts at %s", ch.Watermark)
	if ch.AlreadyHandled >= 0 {
		fmt.Fprintf(stdout, "; %d events after it were handled by the old layout and are skipped", ch.AlreadyHandled)
	}
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "  workers still running with TOTAL_PARTITIONS=%d stop at their next batch; start TOTAL_PARTITIONS=%d with PARTITION_KEY=0..%d\n",
		ch.From, ch.To, ch.To-1)
	return nil
}

// buildPartitionIndex builds the partition index of count for a projection that exists
// and runs with another count (projection.EnsureRescaleIndex), and says so.
func buildPartitionIndex(ctx context.Context, db, name string, count int, stdout io.Writer) error {
	cfg, err := pgxpool.ParseConfig(databaseURL(db))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()
	start := time.Now()
	built, err := projection.EnsureRescaleIndex(ctx, pool, name, count)
	if err != nil {
		return fmt.Errorf("build the partition index of %d partitions (--no-partition-index leaves it to the workers): %w", count, err)
	}
	if built {
		fmt.Fprintf(stdout, "esgen rescale: partition index %s built in %.1f s\n", projection.PartitionIndexName(count), time.Since(start).Seconds())
	}
	return nil
}
