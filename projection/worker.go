package projection

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/generated/dbsqlc"
	"github.com/esgen-dev/esgen/internal/notify"
	"github.com/esgen-dev/esgen/internal/readsql"
)

// HandlerError is the error a partition stops with when its handler failed on an
// event more often than [Config.MaxRetries] allows. The partition's checkpoint stays
// just before the event.
type HandlerError struct {
	Projection string
	Partition  int
	Total      int
	Event      eventstore.Event // without payload
	Attempts   int
	Err        error
}

func (e *HandlerError) Error() string {
	return fmt.Sprintf("projection %s partition %d/%d: handler failed on event %s (type %s, aggregate %s %s version %d, position %s) %d times; stopped before it: %v",
		e.Projection, e.Partition, e.Total, e.Event.EventID, e.Event.Type, e.Event.AggregateType, e.Event.AggregateID,
		e.Event.AggregateVersion, e.Event.Position, e.Attempts, e.Err)
}

func (e *HandlerError) Unwrap() error { return e.Err }

// idleAdvance is how often a partition that has nothing to handle moves its checkpoint
// to the head of the stream anyway (it takes a transaction id, so not on every poll).
const idleAdvance = 10 * time.Second

// errFenced: the checkpoint moved under this worker (another worker with the same
// partition committed first); the batch was rolled back.
var errFenced = errors.New("checkpoint moved by another worker")

// handlerFailure is a handler error on the index-th event of a batch.
type handlerFailure struct {
	index int
	event eventstore.Event
	err   error
}

func (f *handlerFailure) Error() string { return f.err.Error() }
func (f *handlerFailure) Unwrap() error { return f.err }

type worker struct {
	pool  *pgxpool.Pool
	p     Projection
	cfg   Config
	key   int
	total int
	gen   int64
	wake  *notify.Broadcast
	log   *slog.Logger
	obs   Observer
	// fence, for an auto-assigned partition, checks in the batch's transaction that
	// this worker still holds the partition's lease (assign.go).
	fence *leaseFence

	indexed     bool // esgen_events has an index on (partition_hash % total): read through it
	indexCheck  time.Time
	keeper      *indexKeeper // nil with Config.NoPartitionIndex
	processed   int64        // events handled by this worker
	skipRetired bool         // retired layouts exist: filter out what they handled
	lastIdle    time.Time

	retiredHigh eventstore.Position // the latest retired checkpoint, with skipRetired
	lastCleanup time.Time           // the last attempt to delete finished layouts

	// The handler failure being retried.
	failID       uuid.UUID
	failAttempts int
	failSince    time.Time
	limit        int // when > 0, the next batch's size (commits the events before a failing one)

	// Database failures in a row.
	dbFailures int
	dbSince    time.Time
	dbLogged   time.Time

	skips       map[uuid.UUID]bool // events skipped on purpose (esgen skip)
	skipsLoaded time.Time

	state       State
	checkpoint  eventstore.Cursor // as of the last batch
	lag         Lag
	lagCounted  time.Time
	lagCount    lagCount       // the last count of the lag, counted beside the batches
	lagCounting sync.WaitGroup // the count running, if any

	next  *eventstore.Cursor // the checkpoint this worker just committed, while catching up
	ahead []*readAhead       // the next reads, being read on other connections, in order
	// readsBehind: the handlers outran the reads at the last read taken from ahead;
	// lastTake: when it was taken
	readsBehind bool
	lastTake    time.Time
	held        *heldRows // events read and not yet handled, while catching up
	// batchSize is the size of the next batch when the size adapts
	// (Config.adaptiveBatch; 0: Config.BatchSize).
	batchSize int
}

// readRows is how many events a partition reads per statement, at least: a read
// returns up to max(batch size, readRows) events, which the partition handles in
// transactions of the batch size. Reading fewer rows per statement costs the server a
// statement's fixed work (its executor, snapshot and index descent) and a round trip
// for every batch; handling more per transaction makes transactions longer.
//
// A process that runs many partitions reads less per partition, so that what its
// partitions hold stays about readBudget events (each partition holds up to two
// reads while it catches up), but never less than a batch.
const (
	readRows   = 5000
	readBudget = 20000
)

// heldRows are the events of a read that the partition has not handled yet: Events
// from off on, whose cursor is b.Next(off). Handling them in later transactions is
// the same as reading them again from that cursor in the same snapshot: a batch's
// prefix and the rest of it are both cut from one read (eventstore.Batch.Next).
type heldRows struct {
	b           eventstore.Batch
	off         int
	skipRetired bool // read without the events retired layouts handled
}

// readLimit is the limit of a partition's read for a batch of limit events.
func (w *worker) readLimit(limit int) int {
	running := len(w.cfg.Partitions) // the partitions this process may run at once
	if running == 0 {
		running = max(w.total, 1) // every key, or as many as auto-assignment may give it
	}
	return max(limit, min(readRows, readBudget/running))
}

// lagCountInterval is how often a partition that is behind counts its lag exactly.
const lagCountInterval = 5 * time.Second

// dbLogInterval is how often a partition logs that the database is still unavailable.
const dbLogInterval = 30 * time.Second

// run processes the partition until ctx ends (nil) or it fails for good. hardCtx
// bounds the batch in hand after ctx ended.
func (w *worker) run(ctx, hardCtx context.Context) error {
	w.checkIndex(ctx)
	w.log.Info("partition started", "batch_size", w.cfg.BatchSize, "batch_size_adapts", w.cfg.adaptiveBatch, "generation", w.gen, "notify", !w.cfg.DisableNotify, "partition_index", w.indexed)
	lastReport, reported := time.Now(), int64(0)
	defer func() {
		w.dropReadAhead(hardCtx)
		w.lagCounting.Wait()
		w.setState(StateStopped, RetryNone, nil)
		w.log.Info("partition stopped", "events_processed", w.processed, "checkpoint", w.checkpoint.String())
	}()
	w.refreshRetired(ctx)
	_ = w.loadSkips(ctx) // read again after a failure
	w.setState(StateRunning, RetryNone, nil)

	for ctx.Err() == nil {
		// Progress lines only when something moved.
		if time.Since(lastReport) >= w.cfg.ProgressInterval {
			if w.processed > reported {
				attrs := []any{"events_processed", w.processed, "since_last", w.processed - reported, "checkpoint", w.checkpoint.String()}
				if _, none := w.obs.(nopObserver); !none { // the lag is counted for observers only
					attrs = append(attrs, "lag_events", w.lag.Events)
				}
				w.log.Info("progress", attrs...)
			}
			lastReport, reported = time.Now(), w.processed
		}
		if time.Since(w.indexCheck) >= partitionIndexCheck {
			w.checkIndex(ctx)
		}
		wake := w.wake.C()
		n, full, err := w.batch(ctx, hardCtx)
		switch {
		case err == nil:
			w.databaseBack()
			w.reportLag(ctx, n, full)
			if full {
				continue
			}
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errFenced):
			w.log.Debug("checkpoint moved by another worker; re-reading")
			continue
		case isTransient(err):
			w.databaseFailed(ctx, err)
			continue
		default:
			var hf *handlerFailure
			if !errors.As(err, &hf) {
				return err
			}
			herr := w.handlerFailed(ctx, hf)
			if herr == nil {
				continue
			}
			if !w.cfg.KeepStopped {
				return herr
			}
			if !w.waitForSkip(ctx, herr) {
				return nil
			}
			continue
		}
		// Caught up: wait for a notification or the poll interval. A notification
		// reaches this process only after the appending transaction committed, and
		// the read does not wait for older transactions that are still running, so
		// the next read sees the events it announced.
		t := time.NewTimer(jitter(w.cfg.PollInterval))
		select {
		case <-ctx.Done():
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
	return nil
}

// checkIndex looks whether the partition index of this worker's count is usable (it
// may be built, or dropped, while the worker runs): with it, the partition reads only
// its own rows.
func (w *worker) checkIndex(ctx context.Context) {
	w.indexCheck = time.Now()
	if w.total <= 1 {
		return
	}
	if len(w.ahead) > 0 {
		// The batches read ahead hold connections until this worker takes them: never
		// wait long for another one (with a small pool, every connection may be
		// held so). The look goes on at the next batch.
		if !w.spare() {
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
	}
	indexed, err := queries.HasPartitionIndex(ctx, w.pool, int32(w.total))
	if err != nil || indexed == w.indexed {
		return
	}
	w.indexed = indexed
	if w.state != StateStarting {
		w.log.Info("partition index changed", "partition_index", indexed)
	}
}

func (w *worker) partition() Partition {
	return Partition{Projection: w.p.Name, Key: w.key, Total: w.total, Generation: w.gen}
}

// setState reports a change of state to the observer; retries are reported each time.
func (w *worker) setState(s State, cause RetryCause, err error) {
	if s == w.state && s != StateRetrying {
		return
	}
	since := time.Now()
	switch cause {
	case RetryHandler:
		since = w.failSince
	case RetryDatabase:
		since = w.dbSince
	}
	w.state = s
	w.obs.PartitionState(w.partition(), StateChange{State: s, Cause: cause, Since: since, Err: err})
}

// reportLag reports the lag after a batch that committed n events: none left after a
// read that was not full; otherwise an estimate, counted exactly now and then. The
// count runs beside the batches (it scans what is left of the partition, which takes
// long on a large backlog) and only when something observes the lag.
func (w *worker) reportLag(ctx context.Context, n int, full bool) {
	if _, none := w.obs.(nopObserver); none {
		return
	}
	if !full {
		w.lag = Lag{}
	} else {
		w.lag.Events -= int64(n)
		w.takeLagCount()
		if time.Since(w.lagCounted) >= lagCountInterval {
			w.countLag(ctx)
		}
		w.lag.Events = max(w.lag.Events, 1) // full: more is waiting
	}
	w.lag.Checkpoint = w.checkpoint
	w.obs.Lag(w.partition(), w.lag)
}

// lagCount is the result of a count of the lag running beside the batches.
type lagCount struct {
	mu          sync.Mutex
	running     bool
	done        bool
	events      int64
	processedAt int64 // events the worker had processed at the counted checkpoint
}

// takeLagCount uses a count that finished since the last call: it was taken at a
// checkpoint this worker has since moved past by the events it processed meanwhile.
func (w *worker) takeLagCount() {
	c := &w.lagCount
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		c.done = false
		w.lag.Events = c.events - (w.processed - c.processedAt)
	}
}

// countLag starts counting the partition's lag (what esgen status shows) as of its
// checkpoint, on another pool connection, unless a count is running.
func (w *worker) countLag(ctx context.Context) {
	w.lagCounted = time.Now()
	w.lagCount.mu.Lock()
	if w.lagCount.running {
		w.lagCount.mu.Unlock()
		return
	}
	w.lagCount.running = true
	processed := w.processed
	w.lagCount.mu.Unlock()
	c := w.checkpoint
	txs, positions := c.HoleArrays()
	st := readsql.PartitionLag(readsql.Filter{
		AfterTransactionID: c.TransactionID, AfterPosition: c.GlobalPosition,
		TotalPartitions: w.total, PartitionKey: w.key, EventTypes: w.p.EventTypes,
	}, readsql.Holes{TransactionIDs: txs, Positions: positions}, w.p.Name)
	w.lagCounting.Go(func() {
		var lag int64
		err := w.pool.QueryRow(ctx, st.SQL, st.Args...).Scan(&lag)
		w.lagCount.mu.Lock()
		defer w.lagCount.mu.Unlock()
		w.lagCount.running = false
		if err == nil {
			w.lagCount.done, w.lagCount.events, w.lagCount.processedAt = true, lag, processed
		}
	})
}

// databaseFailed waits before retrying after a transient database error: with backoff
// up to Config.MaxRetryBackoff, logging the first failure in a row and then every
// dbLogInterval.
func (w *worker) databaseFailed(ctx context.Context, err error) {
	d := backoff(w.cfg.RetryBackoff, w.cfg.MaxRetryBackoff, w.dbFailures)
	if w.dbFailures == 0 {
		w.dbSince, w.dbLogged = time.Now(), time.Now()
		w.log.Warn("database error, retrying", "error", err, "retry_in", d.Round(time.Millisecond).String())
	} else if time.Since(w.dbLogged) >= dbLogInterval {
		w.dbLogged = time.Now()
		w.log.Warn("database still unavailable, retrying", "error", err, "failing_for", time.Since(w.dbSince).Round(time.Second).String(),
			"attempts", w.dbFailures+1, "retry_in", d.Round(time.Millisecond).String())
	} else {
		w.log.Debug("database error, retrying", "error", err, "retry_in", d.Round(time.Millisecond).String())
	}
	w.dbFailures++
	w.setState(StateRetrying, RetryDatabase, err)
	w.obs.Lag(w.partition(), w.lag)
	sleep(ctx, d)
}

// databaseBack ends a run of database failures, saying so in the log.
func (w *worker) databaseBack() {
	if w.dbFailures > 0 {
		w.log.Info("database reachable again; continuing", "failed_for", time.Since(w.dbSince).Round(time.Millisecond).String(), "attempts", w.dbFailures)
		w.dbFailures = 0
	}
	if w.failID == uuid.Nil {
		w.setState(StateRunning, RetryNone, nil)
	}
}

// handlerFailed decides what follows a handler failure: a retry (nil, after the
// backoff) or the end of the partition (the error it stops with).
func (w *worker) handlerFailed(ctx context.Context, hf *handlerFailure) *HandlerError {
	ev := hf.event
	if ev.EventID != w.failID {
		w.failID, w.failAttempts, w.failSince = ev.EventID, 0, time.Now()
		var pe *PanicError
		if errors.As(hf.err, &pe) {
			// Once per event: the stack is long, and the same on every retry.
			w.log.Error("handler panicked", "position", ev.Position.String(), "event_id", ev.EventID, "event_type", ev.Type,
				"aggregate_id", ev.AggregateID, "panic", fmt.Sprint(pe.Value), "stack", string(pe.Stack))
		}
	}
	w.failAttempts++
	w.batchSize = 0 // an adaptive size starts again from Config.BatchSize
	permanent := isPermanent(hf.err)
	// An operator may have skipped the event meanwhile (esgen skip).
	if err := w.loadSkips(ctx); err == nil && w.skips[ev.EventID] {
		return nil
	}
	// Stop only with the failing event first in its batch: the events before it are
	// committed first, so the checkpoint ends right before it.
	if (w.failAttempts > w.cfg.MaxRetries || permanent) && hf.index == 0 {
		herr := &HandlerError{Projection: w.p.Name, Partition: w.key, Total: w.total, Event: ev, Attempts: w.failAttempts, Err: hf.err}
		w.log.Error("handler failed; partition stopped before the event",
			"position", ev.Position.String(), "event_id", ev.EventID, "event_type", ev.Type,
			"aggregate_type", ev.AggregateType, "aggregate_id", ev.AggregateID, "aggregate_version", ev.AggregateVersion,
			"attempts", w.failAttempts, "permanent", permanent, "error", hf.err)
		w.lag.Oldest = time.Since(ev.CreatedAt)
		w.setState(StateStopped, RetryNone, herr)
		w.obs.Lag(w.partition(), w.lag)
		return herr
	}
	w.setState(StateRetrying, RetryHandler, hf.err)
	w.lag.Oldest = time.Since(ev.CreatedAt)
	w.obs.Lag(w.partition(), w.lag)
	d := backoff(w.cfg.RetryBackoff, w.cfg.MaxRetryBackoff, w.failAttempts-1)
	if hf.index > 0 {
		d = 0 // the events before it are committed first, then it is retried alone
	}
	level := slog.LevelWarn
	if permanent {
		level = slog.LevelDebug // it is not retried: only the events before it are committed first
	}
	w.log.Log(ctx, level, "handler failed, retrying", "position", ev.Position.String(), "event_id", ev.EventID,
		"event_type", ev.Type, "aggregate_id", ev.AggregateID, "attempt", w.failAttempts, "error", hf.err,
		"retry_in", d.Round(time.Millisecond).String())
	if hf.index > 0 {
		w.limit = hf.index
		return nil
	}
	w.limit = 1
	sleep(ctx, d)
	return nil
}

// waitForSkip keeps a stopped partition stopped (Config.KeepStopped) until its failing
// event is skipped (then it reports true and the partition goes on) or ctx ends.
func (w *worker) waitForSkip(ctx context.Context, herr *HandlerError) bool {
	w.log.Info("partition stays stopped until the event is skipped: esgen skip "+w.p.Name+" --event "+herr.Event.EventID.String()+" --reason …",
		"event_id", herr.Event.EventID)
	for sleep(ctx, jitter(w.cfg.PollInterval)) {
		if time.Since(w.lagCounted) >= lagCountInterval {
			w.countLag(ctx)
		}
		w.takeLagCount()
		w.lag.Oldest = time.Since(herr.Event.CreatedAt)
		w.obs.Lag(w.partition(), w.lag)
		if err := w.loadSkips(ctx); err == nil && w.skips[herr.Event.EventID] {
			w.log.Info("the event was skipped; the partition goes on", "event_id", herr.Event.EventID)
			w.limit = 1
			return true
		}
	}
	return false
}

func (w *worker) refreshRetired(ctx context.Context) {
	high, err := queries.LatestRetired(ctx, w.pool, w.p.Name)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		w.skipRetired = false
	case err != nil:
		w.skipRetired = true // the safe choice
	default:
		w.skipRetired = true
		w.retiredHigh = eventstore.Position{TransactionID: high.LastTransactionID.Uint64, GlobalPosition: high.LastPosition}
	}
}

// batch runs one transaction: read, lock the checkpoint, handle, move the checkpoint.
// It reports how many events it handled and whether the read was full (more may be
// waiting).
func (w *worker) batch(ctx, hardCtx context.Context) (n int, full bool, err error) {
	began := time.Now()
	limit := cmp.Or(w.batchSize, w.cfg.BatchSize)
	tune := w.limit == 0 // a batch of the size of the moment, not one narrowed down to a failure
	if w.limit > 0 {
		limit, w.limit = w.limit, 0 // one smaller batch; run sets it again on a failure
	}
	rlimit := w.readLimit(limit)
	skipRetired := w.skipRetired // how this batch's events are (or were) read
	// A failed batch discards what was read ahead after it.
	defer func() {
		if err != nil || !full {
			w.dropReadAhead(hardCtx)
			w.held = nil
		}
	}()
	key := dbsqlc.GetCheckpointParams{Projection: w.p.Name, Generation: w.gen, PartitionKey: int32(w.key)}
	var from eventstore.Cursor
	catchingUp := w.next != nil
	var (
		tx    pgx.Tx
		b     eventstore.Batch
		off   int  // the batch's events are b.Events[off:], up to limit of them
		ahead bool // b was read ahead, in tx
		held  bool // b was read for an earlier batch: its rest is this batch
	)
	if catchingUp {
		// Right after a full batch this worker committed: it knows its checkpoint
		// (the lock below checks it). The batch's events may be in hand already: the
		// rest of the last read, or a read made while the last batch was handled.
		from, w.next = *w.next, nil
		if h := w.held; h != nil {
			w.held = nil
			if h.skipRetired == skipRetired && h.b.Next(h.off).Equal(from) {
				b, off, held = h.b, h.off, true
			}
		}
		if !held {
			tx, b, ahead = w.takeReadAhead(hardCtx, from, rlimit)
		}
	}
	// Until the checkpoint is locked nothing is in hand: reading and waiting for the
	// lock end with ctx. The read comes first and the lock only when there is work, so
	// an idle poll takes no transaction id.
	if !ahead {
		if !held {
			w.dropReadAhead(hardCtx)
		}
		tx, err = w.pool.Begin(ctx)
		if err != nil {
			return 0, false, fmt.Errorf("begin: %w", err)
		}
	}
	defer tx.Rollback(context.WithoutCancel(hardCtx))
	// layoutGone looks the layout up on another connection: first give back the two
	// this partition holds, so that it never waits for a third.
	gone := func() error {
		_ = tx.Rollback(context.WithoutCancel(hardCtx))
		w.dropReadAhead(hardCtx)
		return w.layoutGone(hardCtx)
	}

	if !catchingUp {
		cp, err := queries.GetCheckpoint(ctx, tx, key)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && cp.Retired) {
			return 0, false, gone()
		}
		if err != nil {
			return 0, false, fmt.Errorf("read checkpoint: %w", err)
		}
		from = cursorOf(cp)
		w.checkpoint = from
	}
	// An idle partition's checkpoint follows the head of the stream now and then (on
	// every poll while retired layouts exist, so that they can be dropped), not on
	// every wake-up: it moves past events of other partitions and types, and past
	// running transactions (kept as holes), so that its low watermark stays close to
	// the head.
	followHead := !catchingUp && (w.skipRetired || time.Since(w.lastIdle) >= idleAdvance)
	if !ahead && !held {
		b, err = w.read(ctx, tx, from, rlimit, skipRetired, followHead)
		if err != nil {
			return 0, false, fmt.Errorf("read partition after %s: %w", from, err)
		}
	}
	end := min(off+limit, len(b.Events))
	rows := b.Events[off:end]
	full = end < len(b.Events) || !b.Complete()
	if !held && !b.Complete() {
		// More may be waiting: read on after this read while its events are handled.
		w.startReadAhead(ctx, b.Next(len(b.Events)), rlimit)
	}
	to := b.Next(end)
	if followHead && end == len(b.Events) {
		to = b.Head()
		w.lastIdle = time.Now()
	}
	if to.Equal(from) {
		return 0, false, nil
	}
	if err := w.fence.beforeLock(ctx, tx); err != nil {
		return 0, false, err
	}
	// Lock the checkpoint for the batch. If another worker moved it since it was read
	// (or holds it now and moves it before releasing it), this batch is fenced off.
	locked, err := queries.LockCheckpoint(ctx, tx, dbsqlc.LockCheckpointParams(key))
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && locked.Retired) {
		return 0, false, gone()
	}
	if err != nil {
		return 0, false, fmt.Errorf("lock checkpoint: %w", err)
	}
	if !cursorOf(locked).Equal(from) {
		return 0, false, errFenced
	}
	lockedAt := time.Now()
	retried := false // the event that failed before is in this batch
	skipped := 0
	hctx := context.WithValue(hardCtx, partitionKey{}, w.partition())
	// The handlers' writes queued through Queue go out together (one pipeline), before
	// any other statement on the batch's transaction and at the latest before the
	// checkpoint moves; a failed one is the failure of the event that queued it.
	btx := newBatchTx(tx)
	failure := func(i int, err error) error {
		if isTransient(err) {
			return fmt.Errorf("handler: %w", err)
		}
		if j, ok := queuedOwner(err); ok {
			i = j
		}
		failed := rows[i]
		failed.Payload, failed.Metadata = nil, nil
		return &handlerFailure{index: i, event: failed, err: err}
	}
	// A batch that adapted to more events than the configured size ends early once
	// its transaction has run longer than the target: when the handlers slow down, its
	// transaction is no longer than one of the configured size would be.
	cutAt := len(rows)
	if w.cfg.adaptiveBatch && limit > w.cfg.BatchSize {
		cutAt = w.cfg.BatchSize
	}
	for i := range rows {
		if i >= cutAt && time.Since(lockedAt) > w.batchTarget() {
			end = off + i
			rows = rows[:i]
			full, to = true, b.Next(end)
			break
		}
		ev := &rows[i]
		if w.skips[ev.EventID] {
			if err := w.passSkipped(hctx, btx, ev); err != nil {
				return 0, false, err
			}
			skipped++
			retried = retried || ev.EventID == w.failID
			continue
		}
		if w.log.Enabled(hctx, slog.LevelDebug) {
			w.log.Debug("handling event", "position", ev.Position.String(), "aggregate_type", ev.AggregateType,
				"aggregate_id", ev.AggregateID, "aggregate_version", ev.AggregateVersion, "event_type", ev.Type, "event_id", ev.EventID)
		}
		btx.event = i
		if err := handle(hctx, w.p.Handler, btx, ev); err != nil {
			return 0, false, failure(i, err)
		}
		if ev.EventID == w.failID {
			retried = true
		}
	}
	if err := btx.flush(hctx); err != nil {
		return 0, false, failure(len(rows)-1, err)
	}
	if err := w.fence.check(hardCtx, tx); err != nil {
		return 0, false, err
	}
	oldTxs, oldPos := from.HoleArrays()
	newTxs, newPos := to.HoleArrays()
	moved, err := queries.AdvanceCheckpoint(hardCtx, tx, dbsqlc.AdvanceCheckpointParams{
		NewTransactionID: xid8(to.TransactionID), NewPosition: to.GlobalPosition,
		NewHoleTransactionIds: xid8s(newTxs), NewHolePositions: newPos,
		Handled:    int64(len(rows)),
		Projection: w.p.Name, Generation: w.gen, PartitionKey: int32(w.key),
		OldTransactionID: xid8(from.TransactionID), OldPosition: from.GlobalPosition,
		OldHoleTransactionIds: xid8s(oldTxs), OldHolePositions: oldPos,
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "25P02" { // in_failed_sql_transaction
			return 0, false, fmt.Errorf("projection %s partition %d: a handler returned nil after an SQL error aborted the batch's transaction; return the error instead: %w", w.p.Name, w.key, err)
		}
		return 0, false, fmt.Errorf("move checkpoint to %s: %w", to, err)
	}
	if moved == 0 {
		return 0, false, errFenced
	}
	if err := tx.Commit(hardCtx); err != nil {
		return 0, false, fmt.Errorf("commit batch up to %s: %w", to, err)
	}
	w.processed += int64(len(rows) - skipped)
	w.checkpoint = to
	if tune {
		w.tuneBatchSize(len(rows), limit, time.Since(lockedAt))
	}
	if len(rows) > 0 {
		w.obs.Batch(w.partition(), len(rows)-skipped, skipped, time.Since(began))
		w.lag.Oldest = time.Since(rows[len(rows)-1].CreatedAt)
	}
	if full {
		w.next = &to
		if end < len(b.Events) {
			w.held = &heldRows{b: b, off: end, skipRetired: skipRetired}
		}
	}
	if retried {
		w.failID, w.failAttempts = uuid.Nil, 0
	}
	if !full && time.Since(w.skipsLoaded) >= skipInterval {
		_ = w.loadSkips(ctx)
	}
	// Once this partition has passed every retired checkpoint, the retired layouts may
	// be finished: try to delete them (the last partition to pass them succeeds), at
	// most every few seconds per partition.
	if w.skipRetired && !full && !to.Low().Less(w.retiredHigh) && time.Since(w.lastCleanup) >= lagCountInterval {
		w.dropFinishedLayouts(ctx)
	}
	return len(rows), full, nil
}

// tuneBatchSize sets the size of the next batch when the size adapts
// (Config.BatchSize left at 0) from the batch just committed, which handled n events of
// a limit of limit and held its transaction from the checkpoint's lock to its commit
// for took: a batch of the full size that took at most half of BatchTarget doubles the
// size, up to a whole read; one that took longer than BatchTarget halves it, down to
// Config.BatchSize (DefaultBatchSize).
func (w *worker) tuneBatchSize(n, limit int, took time.Duration) {
	if !w.cfg.adaptiveBatch {
		return
	}
	target := w.batchTarget()
	switch {
	case n == limit && 2*took <= target:
		w.batchSize = min(2*limit, w.readLimit(w.cfg.BatchSize))
	case took > target:
		w.batchSize = max(limit/2, w.cfg.BatchSize)
	}
}

// batchTarget is BatchTarget (or the test's).
func (w *worker) batchTarget() time.Duration { return cmp.Or(w.cfg.batchTarget, BatchTarget) }

// passSkipped passes an event skipped on purpose (esgen skip) instead of handling it,
// and records that it did in the batch's transaction.
func (w *worker) passSkipped(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
	err := queries.MarkSkippedPassed(ctx, tx, dbsqlc.MarkSkippedPassedParams{
		Projection: w.p.Name, EventID: pgUUID(ev.EventID), PartitionKey: int32(w.key), PartitionCount: int32(w.total),
	})
	if err != nil {
		return fmt.Errorf("record the skip of event %s: %w", ev.EventID, err)
	}
	w.log.Warn("event skipped on purpose (esgen skip); not handled", "position", ev.Position.String(), "event_id", ev.EventID,
		"event_type", ev.Type, "aggregate_type", ev.AggregateType, "aggregate_id", ev.AggregateID, "aggregate_version", ev.AggregateVersion)
	return nil
}

// handle calls the handler, turning a panic into a [*PanicError] with its stack.
func handle(ctx context.Context, h Handler, tx pgx.Tx, ev *eventstore.Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return h.Handle(ctx, tx, ev)
}

// dropFinishedLayouts deletes retired layouts that every live checkpoint has passed.
func (w *worker) dropFinishedLayouts(ctx context.Context) {
	w.lastCleanup = time.Now()
	n, err := deleteFinishedLayouts(ctx, w.pool, w.p.Name)
	if err != nil {
		w.log.Debug("could not delete finished layouts", "error", err)
		return
	}
	if n > 0 {
		w.log.Info("retired layout carried over completely; deleted its checkpoints", "checkpoints", n)
		w.keeper.layoutsDeleted()
	}
	w.refreshRetired(ctx)
}

// layoutGone explains why this worker's checkpoint is retired or missing.
func (w *worker) layoutGone(ctx context.Context) error {
	proj, err := queries.GetProjection(ctx, w.pool, w.p.Name)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("projection %s: its checkpoints were deleted (esgen reset?) while this worker ran; restart the worker to rebuild it", w.p.Name)
	}
	if err != nil {
		return fmt.Errorf("projection %s: look up the layout: %w", w.p.Name, err)
	}
	if proj.Generation != w.gen {
		if err := rebuilt(ctx, w.pool, w.p.Name, w.gen); err != nil { // history.go
			return err
		}
		return &LayoutChangedError{Projection: w.p.Name, From: w.total, To: int(proj.PartitionCount), Generation: proj.Generation}
	}
	return fmt.Errorf("projection %s: the checkpoint of partition %d (generation %d) is missing; restart the worker", w.p.Name, w.key, w.gen)
}
