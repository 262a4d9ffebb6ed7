package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projection"
)

// Rows of the upsert group: a handler that keeps a read model (one balance row per
// account, upserted for each event) against a hand-written loop that sends the same
// upserts as one pgx.Batch per transaction.
const (
	upsertRawName       = "raw loop, the batch's upserts as one pgx.Batch per transaction"
	upsertQueuedName    = "batched handler (projection.Queue), 1 worker"
	upsertQueuedParts   = "batched handler (projection.Queue), 4 partitions, 1 process"
	upsertPerEventName  = "per-event handler (tx.Exec per event), 1 worker"
	upsertPerEventParts = "per-event handler (tx.Exec per event), 4 partitions, 1 process"
)

// readModelDDL is the read model the upsert handlers keep: one balance row per account.
const readModelDDL = `CREATE TABLE IF NOT EXISTS bench_balances (
    account_id   text   PRIMARY KEY,
    balance      bigint NOT NULL,
    events       bigint NOT NULL,
    last_version bigint NOT NULL
)`

// upsertBalanceSQL applies one event to the read model.
const upsertBalanceSQL = `
INSERT INTO bench_balances (account_id, balance, events, last_version) VALUES ($1, $2, 1, $3)
ON CONFLICT (account_id) DO UPDATE
SET balance = bench_balances.balance + excluded.balance, events = bench_balances.events + 1,
    last_version = excluded.last_version`

// balanceDelta is what an event adds to its account's balance.
func balanceDelta(eventType string, payload []byte) (int64, error) {
	var body struct {
		Amount int64 `json:"amount"`
	}
	if err := json.Unmarshal(payload, &body); err != nil {
		return 0, err
	}
	switch eventType {
	case "MoneyDeposited":
		return body.Amount, nil
	case "MoneyWithdrawn":
		return -body.Amount, nil
	}
	return 0, nil
}

// upsertBalance applies one event to the read model in the batch's transaction, one
// round trip per event.
func upsertBalance(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
	amount, err := balanceDelta(ev.Type, ev.Payload)
	if err != nil {
		return fmt.Errorf("payload of %s: %w", ev.EventID, err)
	}
	_, err = tx.Exec(ctx, upsertBalanceSQL, ev.AggregateID, amount, ev.AggregateVersion)
	return err
}

// upsertBalanceQueued is upsertBalance with its write queued (projection.Queue): the
// batch's upserts reach the server as one pipeline before the batch commits.
func upsertBalanceQueued(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
	amount, err := balanceDelta(ev.Type, ev.Payload)
	if err != nil {
		return fmt.Errorf("payload of %s: %w", ev.EventID, err)
	}
	_, err = projection.Queue(tx).Exec(ctx, upsertBalanceSQL, ev.AggregateID, amount, ev.AggregateVersion)
	return err
}

// upsertEvents is the size of the upsert group's stream.
func (c Config) upsertEvents() int { return max(c.CatchUpEvents/10, 2000) }

func (r *runner) upsertGroup(ctx context.Context) error {
	pool, url, done, err := r.database(ctx, GroupUpsert, 8)
	if err != nil {
		return err
	}
	defer done()
	start := time.Now()
	n, err := loadStream(ctx, pool, r.cfg.upsertEvents(), false)
	if err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, readModelDDL); err != nil {
		return err
	}
	r.note("upsert stream: %d events over %d aggregates, loaded in %.1f s; each row upserts one balance row per event (%d accounts); the raw loop commits every %d events, the runtime's rows use its default batch size (adaptive: %d events per transaction, growing to a whole read while transactions stay under %s)",
		n, n/eventsPerAggregate, time.Since(start).Seconds(), n/eventsPerAggregate, projection.DefaultBatchSize, projection.DefaultBatchSize, projection.BatchTarget)
	// Table reads are counted as in the catch-up group: through a pool of its own that
	// never reads esgen_events itself.
	pool.Close()
	pool, err = newPool(ctx, url, 2)
	if err != nil {
		return err
	}
	defer pool.Close()

	raw, err := r.rawUpserts(ctx, pool, url, int64(n))
	if err != nil {
		return fmt.Errorf("%s: %w", upsertRawName, err)
	}
	r.add(raw)
	scenarios := []struct {
		name    string
		parts   []int
		handler func(context.Context, pgx.Tx, *eventstore.Event) error
	}{
		{upsertQueuedName, []int{0}, upsertBalanceQueued},
		{upsertPerEventName, []int{0}, upsertBalance},
		{upsertQueuedParts, []int{0, 1, 2, 3}, upsertBalanceQueued},
		{upsertPerEventParts, []int{0, 1, 2, 3}, upsertBalance},
	}
	for i, s := range scenarios {
		res, err := r.upsertRun(ctx, pool, url, fmt.Sprintf("bench_upsert_%d", i), s.parts, int64(n), s.handler)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		res.Name, res.RawName = s.name, upsertRawName
		r.add(res)
	}
	return nil
}

// checkBalances checks that the read model counts every one of the n events once, and
// empties it for the next scenario.
func checkBalances(ctx context.Context, pool *pgxpool.Pool, n int64) error {
	var counted int64
	if err := pool.QueryRow(ctx, `SELECT coalesce(sum(events), 0) FROM bench_balances`).Scan(&counted); err != nil {
		return err
	}
	if counted != n {
		return fmt.Errorf("the read model counts %d events, want %d", counted, n)
	}
	_, err := pool.Exec(ctx, `TRUNCATE bench_balances`)
	return err
}

// rawUpserts is the raw limit of the group: a hand-written loop that reads the stream as
// a minimal projection would (per transaction: lock a checkpoint row, read the next
// batch after it, move it) and sends the batch's upserts, the same statements the
// handlers send, as one pgx.Batch before moving the checkpoint.
func (r *runner) rawUpserts(ctx context.Context, pool *pgxpool.Pool, url string, n int64) (Result, error) {
	if _, err := pool.Exec(ctx, rawCheckpointSQL); err != nil {
		return Result{}, err
	}
	limit := projection.DefaultBatchSize
	res, err := r.measureRead(ctx, pool, url, func(conn *pgx.Conn) (int64, error) {
		return rawBatches(ctx, conn, limit, func(e *rawEvent, writes *pgx.Batch) error {
			amount, err := balanceDelta(e.typ, e.payload)
			if err != nil {
				return err
			}
			writes.Queue(upsertBalanceSQL, e.aggID, amount, e.ver)
			return nil
		})
	})
	if err != nil {
		return Result{}, err
	}
	if res.Events != n {
		return Result{}, fmt.Errorf("read %d events, want %d", res.Events, n)
	}
	res.Group, res.Name, res.Raw = GroupUpsert, upsertRawName, true
	res.Note = "BEGIN, lock a checkpoint row, SELECT … LIMIT, one pgx.Batch of upserts, UPDATE the checkpoint, COMMIT"
	return res, checkBalances(ctx, pool, n)
}

// upsertRun runs a projection with handler over the partitions parts of len(parts) in
// this process, on a pool of its own, until it has handled the n events of the stream,
// and checks the read model.
func (r *runner) upsertRun(ctx context.Context, statsPool *pgxpool.Pool, url, name string, parts []int, n int64,
	handler func(context.Context, pgx.Tx, *eventstore.Event) error) (Result, error) {
	before, err := tableReads(ctx, statsPool)
	if err != nil {
		return Result{}, err
	}
	pool, err := newPool(ctx, url, int32(2*len(parts)+2))
	if err != nil {
		return Result{}, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var handled atomic.Int64
	h := projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
		if err := handler(ctx, tx, ev); err != nil {
			return err
		}
		// Counted when handled, not when committed: the run ends with the batch that
		// reaches n, whose commit projection.Run finishes before it returns.
		if handled.Add(1) == n {
			cancel()
		}
		return nil
	})
	cfg := projection.Config{Partitions: parts, TotalPartitions: len(parts), DisableNotify: true,
		Logger: slog.New(slog.DiscardHandler)}
	r.resetStatements(ctx, statsPool)
	stopMem := peakHeap()
	cpu0 := cpuTime()
	start := time.Now()
	err = projection.Run(runCtx, pool, projection.Projection{Name: name, Handler: h, Partitioned: len(parts) > 1}, cfg)
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	peak := stopMem()
	pool.Close()
	if err != nil {
		return Result{}, err
	}
	if got := handled.Load(); got < n {
		return Result{}, fmt.Errorf("projection %s stopped after %d of %d events", name, got, n)
	}
	after, err := tableReads(ctx, statsPool)
	if err != nil {
		return Result{}, err
	}
	res := Result{Group: GroupUpsert, Events: n, Seconds: elapsed.Seconds(), EventsPerSec: float64(n) / elapsed.Seconds(),
		RowsScanned: after - before, RowsReturned: n, PeakMemBytes: peak, ClientCPUSeconds: cpu.Seconds(),
		Server: r.serverTime(ctx, statsPool)}
	return res, checkBalances(ctx, statsPool, n)
}
