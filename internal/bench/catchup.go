package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/readsql"
	"github.com/esgen-dev/esgen/projection"
)

// Handlers of the catch-up scenarios.
const (
	handlerNoop   = "no-op"
	handlerUpsert = "upsert"
)

// catchUpPartitions is the partition count of the partitioned scenarios.
const catchUpPartitions = 4

// Layouts of the catch-up scenarios.
const (
	layoutOne       = "1 worker"
	layoutInProcess = "4 partitions, 1 process"
	layoutProcesses = "4 processes"
	layoutOldBatch  = "1 worker, batch 500"
)

// oldBatch is the batch size of the scenario that shows what the batch size costs:
// the runtime's default before it was 1000.
const oldBatch = 500

const rawReadName = "raw streaming SELECT, same rows and order"

// catchUpRounds is how many times each catch-up scenario runs, the scenarios taking
// turns; the fastest run of each is its row (the raw read runs twice too: before the
// scenarios and after them).
const catchUpRounds = 2

func noop(context.Context, pgx.Tx, *eventstore.Event) error { return nil }

// countingHandler counts the events handled and calls done once when the count
// reaches target.
func countingHandler(kind string, target int64, done func()) (projection.Handler, *atomic.Int64) {
	var n atomic.Int64
	inner := noop
	if kind == handlerUpsert {
		inner = upsertBalance
	}
	return projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
		if err := inner(ctx, tx, ev); err != nil {
			return err
		}
		if n.Add(1) == target {
			done()
		}
		return nil
	}), &n
}

// catchUpSpec is one catch-up run: a projection reading the stream from the start
// until it has handled Target events.
type catchUpSpec struct {
	Database   string `json:"database"`
	Projection string `json:"projection"`
	Handler    string `json:"handler"`
	Partitions []int  `json:"partitions"`
	Total      int    `json:"total"`
	Target     int64  `json:"target"`
	BatchSize  int    `json:"batch_size,omitempty"`
}

// catchUp runs spec in this process on pool and returns the events handled and the time
// from start until projection.Run returned.
func catchUp(ctx context.Context, pool *pgxpool.Pool, spec catchUpSpec) (int64, time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h, n := countingHandler(spec.Handler, spec.Target, cancel)
	p := projection.Projection{Name: spec.Projection, Handler: h, Partitioned: spec.Total > 1}
	cfg := projection.Config{
		Partitions: spec.Partitions, TotalPartitions: spec.Total, BatchSize: spec.BatchSize,
		DisableNotify: true, // nothing is appended meanwhile
		Logger:        slog.New(slog.DiscardHandler),
	}
	start := time.Now()
	err := projection.Run(ctx, pool, p, cfg)
	elapsed := time.Since(start)
	if err != nil {
		return n.Load(), elapsed, err
	}
	if got := n.Load(); got < spec.Target {
		return got, elapsed, fmt.Errorf("projection %s stopped after %d of %d events: %w", spec.Projection, got, spec.Target, context.Cause(ctx))
	}
	return n.Load(), elapsed, nil
}

func (r *runner) catchUpGroup(ctx context.Context) error {
	pool, url, done, err := r.database(ctx, GroupCatchUp, 8)
	if err != nil {
		return err
	}
	defer done()
	start := time.Now()
	n, err := loadStream(ctx, pool, r.cfg.CatchUpEvents, false)
	if err != nil {
		return err
	}
	r.note("catch-up stream: %d events over %d aggregates, loaded in %.1f s by INSERT … SELECT (and vacuumed); projections run with the runtime's default batch size unless the row says otherwise (adaptive: %d events per transaction, growing to a whole read of 5000 while transactions stay under %s)",
		n, n/eventsPerAggregate, time.Since(start).Seconds(), projection.DefaultBatchSize, projection.BatchTarget)
	perPartition, err := partitionCounts(ctx, pool, catchUpPartitions)
	if err != nil {
		return err
	}
	// The partition index that the first worker of a partitioned layout would build,
	// built before the scenarios so that they all read through it from the start.
	start = time.Now()
	if _, err := projection.EnsurePartitionIndex(ctx, pool, catchUpPartitions); err != nil {
		return err
	}
	r.note("partition index %s built (CREATE INDEX CONCURRENTLY, as the layout does) in %.1f s before the scenarios",
		projection.PartitionIndexName(catchUpPartitions), time.Since(start).Seconds())

	// Reads are counted from pg_stat_user_tables, which a backend updates at the latest
	// when it ends: close the connections that loaded and counted, and measure through a
	// pool of its own that never reads esgen_events itself.
	pool.Close()
	pool, err = newPool(ctx, url, 2)
	if err != nil {
		return err
	}
	defer pool.Close()

	// The raw read runs first and again last; the faster of the two is the limit, so
	// that a burst of load on the machine during one of them does not flatter esgen.
	raw, err := r.rawRead(ctx, pool, url)
	if err != nil {
		return fmt.Errorf("raw read: %w", err)
	}
	rawAt := len(r.report.Results)
	r.add(raw)
	batched, err := r.rawBatchedRead(ctx, pool, url)
	if err != nil {
		return fmt.Errorf("raw batched read: %w", err)
	}
	r.add(batched)
	reads, err := r.gapSafeReads(ctx, pool, url)
	if err != nil {
		return fmt.Errorf("gap-safe reads: %w", err)
	}
	r.add(reads)

	// Handlers that write are measured in the upsert group. The scenarios take turns,
	// catchUpRounds times, and each row is its fastest run, as the raw read is the
	// faster of its two runs: a burst of load on a shared machine during one run
	// should decide neither side of a ratio.
	layouts := []string{layoutOne, layoutInProcess, layoutProcesses, layoutOldBatch}
	best := make([]Result, len(layouts))
	low := make([]float64, len(layouts))
	for round := range catchUpRounds {
		for i, layout := range layouts {
			name := fmt.Sprintf("%s handler, %s", handlerNoop, layout)
			spec := catchUpSpec{Database: url, Projection: fmt.Sprintf("bench_%d_%d", i, round), Handler: handlerNoop, Target: int64(n)}
			var res Result
			switch layout {
			case layoutOne:
				spec.Partitions, spec.Total = []int{0}, 1
				res, err = r.inProcess(ctx, pool, url, spec)
			case layoutOldBatch:
				spec.Partitions, spec.Total, spec.BatchSize = []int{0}, 1, oldBatch
				res, err = r.inProcess(ctx, pool, url, spec)
			case layoutInProcess:
				spec.Partitions, spec.Total = []int{0, 1, 2, 3}, catchUpPartitions
				res, err = r.inProcess(ctx, pool, url, spec)
			case layoutProcesses:
				res, err = r.processes(ctx, pool, spec, perPartition, int64(n))
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			res.Name, res.RawName = name, rawReadName
			if res.EventsPerSec > best[i].EventsPerSec {
				best[i] = res
			}
			if low[i] == 0 || res.EventsPerSec < low[i] {
				low[i] = res.EventsPerSec
			}
		}
	}
	for i := range layouts {
		res := best[i]
		res.Note = fmt.Sprintf("best of %d runs taking turns with the other catch-up rows; the slowest: %.0f events/s", catchUpRounds, low[i])
		r.add(res)
	}
	again, err := r.rawRead(ctx, pool, url)
	if err != nil {
		return fmt.Errorf("raw read: %w", err)
	}
	r.note("raw streaming SELECT: %.0f events/s before the catch-up scenarios, %.0f after; the table shows the faster",
		raw.EventsPerSec, again.EventsPerSec)
	if again.EventsPerSec > raw.EventsPerSec {
		r.report.Results[rawAt] = again
	}
	return r.explainBatch(ctx, pool, n)
}

// partitionCounts returns the number of events in each partition of total.
func partitionCounts(ctx context.Context, pool *pgxpool.Pool, total int) ([]int64, error) {
	out := make([]int64, total)
	rows, err := pool.Query(ctx, `SELECT (partition_hash % $1)::integer, count(*) FROM esgen_events GROUP BY 1`, total)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var k int
		var c int64
		if err := rows.Scan(&k, &c); err != nil {
			return nil, err
		}
		out[k] = c
	}
	return out, rows.Err()
}

// tableReads returns the heap rows read from esgen_events so far (index fetches plus
// sequential reads) once the counters have settled: backends report their counts when
// they end, shortly after their connection closes.
func tableReads(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var last int64 = -1
	for range 30 {
		var v int64
		if err := pool.QueryRow(ctx, `SELECT pg_stat_clear_snapshot()`).Scan(new(any)); err != nil {
			return 0, err
		}
		if err := pool.QueryRow(ctx, `SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0) FROM pg_stat_user_tables WHERE relname = 'esgen_events'`).Scan(&v); err != nil {
			return 0, err
		}
		if v == last {
			return v, nil
		}
		last = v
		time.Sleep(100 * time.Millisecond)
	}
	return last, nil
}

const eventColumns = `global_position, transaction_id, event_id, aggregate_type, aggregate_id, aggregate_version,
       event_type, event_version, partition_hash, payload, metadata, correlation_id, causation_id, created_at`

// rawEvent receives a row as the event store's generated code would.
type rawEvent struct {
	pos, ver, hash      int64
	tx                  pgtype.Uint64
	id, corr, caus      pgtype.UUID
	aggType, aggID, typ string
	evVer               int32
	payload, meta       []byte
	created             pgtype.Timestamptz
}

// scan decodes the current row of a SELECT of eventColumns into e.
func (e *rawEvent) scan(rows pgx.Rows) error {
	return rows.Scan(&e.pos, &e.tx, &e.id, &e.aggType, &e.aggID, &e.ver, &e.typ, &e.evVer, &e.hash,
		&e.payload, &e.meta, &e.corr, &e.caus, &e.created)
}

// scanEvents decodes every row into e and returns the count.
func scanEvents(rows pgx.Rows, e *rawEvent) (int64, error) {
	defer rows.Close()
	var n int64
	for rows.Next() {
		if err := e.scan(rows); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

// rawRead streams every event in commit-safe order over one connection and decodes each
// row into the same Go types the event store uses: the limit of any reader.
func (r *runner) rawRead(ctx context.Context, pool *pgxpool.Pool, url string) (Result, error) {
	res, err := r.measureRead(ctx, pool, url, func(conn *pgx.Conn) (int64, error) {
		rows, err := conn.Query(ctx, `SELECT `+eventColumns+` FROM esgen_events
WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY transaction_id, global_position`)
		if err != nil {
			return 0, err
		}
		return scanEvents(rows, new(rawEvent))
	})
	res.Name, res.Raw = rawReadName, true
	return res, err
}

// rawBatchedRead reads the stream as a minimal hand-written projection would: per
// transaction one batch of the runtime's default size after a checkpoint row, then the
// checkpoint row moved. It shows what batching alone costs, apart from the runtime.
func (r *runner) rawBatchedRead(ctx context.Context, pool *pgxpool.Pool, url string) (Result, error) {
	if _, err := pool.Exec(ctx, rawCheckpointSQL); err != nil {
		return Result{}, err
	}
	batch := projection.DefaultBatchSize
	res, err := r.measureRead(ctx, pool, url, func(conn *pgx.Conn) (int64, error) {
		return rawBatches(ctx, conn, batch, nil)
	})
	res.Name, res.RawName = fmt.Sprintf("raw batched read, %d rows + checkpoint per tx", batch), rawReadName
	res.Note = "a hand-written loop: BEGIN, lock a checkpoint row, SELECT … LIMIT, UPDATE the checkpoint, COMMIT"
	return res, err
}

// gapSafeReadRows is how many events each statement of gapSafeReads reads: as many
// as a catching-up partition reads per statement.
const gapSafeReadRows = 5000

var gapSafeReadsName = fmt.Sprintf("gap-safe reads alone, %d per statement, no handling", gapSafeReadRows)

// gapSafeReads reads the stream as a catching-up partition does, without handling:
// gap-safe reads of gapSafeReadRows events (eventstore.ReadFrom, the statement the
// projections' reads share), one after another on one connection, each from the
// cursor the one before left. Next to the raw read it shows what the reads alone cost;
// next to the no-op handler rows, what handling and committing beside them costs.
func (r *runner) gapSafeReads(ctx context.Context, pool *pgxpool.Pool, url string) (Result, error) {
	res, err := r.measureRead(ctx, pool, url, func(conn *pgx.Conn) (int64, error) {
		var from eventstore.Cursor
		var n int64
		for {
			b, err := eventstore.ReadFrom(ctx, conn, from, eventstore.ReadOptions{Limit: gapSafeReadRows})
			if err != nil {
				return n, err
			}
			n += int64(len(b.Events))
			from = b.Next(len(b.Events))
			if b.Complete() {
				return n, nil
			}
		}
	})
	res.Name, res.RawName = gapSafeReadsName, rawReadName
	res.Note = "eventstore.ReadFrom one after another from the cursor each leaves: a partition's reads without its handling and commits"
	return res, err
}

// rawCheckpointSQL creates the checkpoint row of the raw batched loops, or puts it back
// at the start of the stream.
const rawCheckpointSQL = `CREATE TABLE IF NOT EXISTS bench_checkpoint (id int PRIMARY KEY, tx xid8 NOT NULL, pos bigint NOT NULL);
INSERT INTO bench_checkpoint VALUES (1, '0', 0) ON CONFLICT (id) DO UPDATE SET tx = '0', pos = 0`

// rawBatches is the loop of a minimal hand-written projection, until a batch is not
// full: per transaction, lock the checkpoint row, read up to limit events after it
// (commit-safe), call each for every event (it may queue writes into the batch's
// pgx.Batch, sent as one pipeline), move the checkpoint, commit. each may be nil. It
// returns the events read.
func rawBatches(ctx context.Context, conn *pgx.Conn, limit int, each func(e *rawEvent, writes *pgx.Batch) error) (int64, error) {
	var total int64
	for {
		n, err := rawBatch(ctx, conn, limit, each)
		total += n
		if err != nil || n < int64(limit) {
			return total, err
		}
	}
}

// rawBatch is one transaction of rawBatches.
func rawBatch(ctx context.Context, conn *pgx.Conn, limit int, each func(*rawEvent, *pgx.Batch) error) (int64, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	var e rawEvent
	if err := tx.QueryRow(ctx, `SELECT tx, pos FROM bench_checkpoint WHERE id = 1 FOR UPDATE`).Scan(&e.tx, &e.pos); err != nil {
		return 0, err
	}
	rows, err := tx.Query(ctx, `SELECT `+eventColumns+` FROM esgen_events
WHERE (transaction_id, global_position) > ($1, $2) AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY transaction_id, global_position LIMIT $3`, e.tx, e.pos, limit)
	if err != nil {
		return 0, err
	}
	var writes pgx.Batch
	var n int64
	for rows.Next() {
		if err := e.scan(rows); err != nil {
			rows.Close()
			return 0, err
		}
		n++
		if each != nil {
			if err := each(&e, &writes); err != nil {
				rows.Close()
				return 0, err
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, tx.Commit(ctx)
	}
	if writes.Len() > 0 {
		if err := tx.SendBatch(ctx, &writes).Close(); err != nil {
			return 0, err
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE bench_checkpoint SET tx = $1, pos = $2 WHERE id = 1`, e.tx, e.pos); err != nil {
		return 0, err
	}
	return n, tx.Commit(ctx)
}

// measureRead times read on a connection of its own and counts the rows it read from
// esgen_events, its CPU time, its peak heap and the server's time.
func (r *runner) measureRead(ctx context.Context, pool *pgxpool.Pool, url string, read func(*pgx.Conn) (int64, error)) (Result, error) {
	before, err := tableReads(ctx, pool)
	if err != nil {
		return Result{}, err
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return Result{}, err
	}
	r.resetStatements(ctx, pool)
	stopMem := peakHeap()
	cpu0 := cpuTime()
	start := time.Now()
	count, err := read(conn)
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	peak := stopMem()
	conn.Close(ctx)
	if err != nil {
		return Result{}, err
	}
	after, err := tableReads(ctx, pool)
	if err != nil {
		return Result{}, err
	}
	return Result{Group: GroupCatchUp, Events: count, Seconds: elapsed.Seconds(),
		EventsPerSec: float64(count) / elapsed.Seconds(), RowsScanned: after - before, RowsReturned: count, PeakMemBytes: peak,
		ClientCPUSeconds: cpu.Seconds(), Server: r.serverTime(ctx, pool)}, nil
}

// inProcess runs spec in this process on a pool of its own.
func (r *runner) inProcess(ctx context.Context, statsPool *pgxpool.Pool, url string, spec catchUpSpec) (Result, error) {
	before, err := tableReads(ctx, statsPool)
	if err != nil {
		return Result{}, err
	}
	pool, err := newPool(ctx, url, int32(len(spec.Partitions)+2))
	if err != nil {
		return Result{}, err
	}
	r.resetStatements(ctx, statsPool)
	stopMem := peakHeap()
	cpu0 := cpuTime()
	handled, elapsed, err := catchUp(ctx, pool, spec)
	cpu := cpuTime() - cpu0
	peak := stopMem()
	pool.Close()
	if err != nil {
		return Result{}, err
	}
	after, err := tableReads(ctx, statsPool)
	if err != nil {
		return Result{}, err
	}
	return Result{Group: GroupCatchUp, Events: handled, Seconds: elapsed.Seconds(), EventsPerSec: float64(handled) / elapsed.Seconds(),
		RowsScanned: after - before, RowsReturned: handled, PeakMemBytes: peak, ClientCPUSeconds: cpu.Seconds(),
		Server: r.serverTime(ctx, statsPool)}, nil
}

// explainBatch notes what one batch query of partition 0 of 4 reads from the start, the
// middle and nine tenths into the stream, as EXPLAIN (ANALYZE) shows it: how many rows
// the scan of esgen_events read for the batch, and whether the plan changes with the
// position. The statement is the runtime's own (readsql.ReadPartition through the
// partition index, as the workers read once it exists).
func (r *runner) explainBatch(ctx context.Context, pool *pgxpool.Pool, streamLen int) error {
	var parts []string
	for _, at := range []int{0, 50, 90} {
		var tx pgtype.Uint64
		var pos int64
		if at > 0 {
			err := pool.QueryRow(ctx, `SELECT transaction_id, global_position FROM esgen_events
ORDER BY transaction_id, global_position OFFSET $1 LIMIT 1`, streamLen*at/100).Scan(&tx, &pos)
			if err != nil {
				return fmt.Errorf("explain: %w", err)
			}
		}
		read := readsql.ReadPartition(readsql.PartitionRead{
			Filter: readsql.Filter{AfterTransactionID: tx.Uint64, AfterPosition: pos, TotalPartitions: catchUpPartitions},
			Limit:  projection.DefaultBatchSize, Projection: "bench_explain", Literal: true,
		})
		var plan []byte
		err := pool.QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+read.SQL, read.Args...).Scan(&plan)
		if err != nil {
			r.note("no EXPLAIN of a batch: %v", err)
			return nil
		}
		var doc []struct {
			Plan planNode `json:"Plan"`
			Ms   float64  `json:"Execution Time"`
		}
		if err := json.Unmarshal(plan, &doc); err != nil || len(doc) == 0 {
			return fmt.Errorf("explain: %v", err)
		}
		scan := doc[0].Plan.find(func(p *planNode) bool { return p.RelationName == "esgen_events" })
		if scan == nil {
			continue
		}
		parts = append(parts, fmt.Sprintf("at %d%%: %s using %s kept %d rows, removed %d (%d buffers, %.1f ms)",
			at, scan.NodeType, cmp.Or(scan.IndexName, "no index"), scan.ActualRows, scan.RowsRemovedByFilter,
			scan.SharedHitBlocks+scan.SharedReadBlocks, doc[0].Ms))
	}
	r.note("EXPLAIN ANALYZE of the runtime's batch query for partition 0/%d (LIMIT %d) from a position into the stream: %s",
		catchUpPartitions, projection.DefaultBatchSize, strings.Join(parts, "; "))
	return nil
}

type planNode struct {
	NodeType            string     `json:"Node Type"`
	RelationName        string     `json:"Relation Name"`
	IndexName           string     `json:"Index Name"`
	ActualRows          int64      `json:"Actual Rows"`
	RowsRemovedByFilter int64      `json:"Rows Removed by Filter"`
	SharedHitBlocks     int64      `json:"Shared Hit Blocks"`
	SharedReadBlocks    int64      `json:"Shared Read Blocks"`
	Plans               []planNode `json:"Plans"`
}

func (p *planNode) find(f func(*planNode) bool) *planNode {
	if f(p) {
		return p
	}
	for i := range p.Plans {
		if q := p.Plans[i].find(f); q != nil {
			return q
		}
	}
	return nil
}
