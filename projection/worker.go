package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/generated/dbsqlc"
	"github.com/esgen-dev/esgen/internal/notify"
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

	indexed     bool  // esgen_events has an index on (partition_hash % total): read through it
	processed   int64 // events handled by this worker
	skipRetired bool  // retired layouts exist: filter out what they handled
	lastIdle    time.Time

	// The handler failure being retried.
	failID       uuid.UUID
	failAttempts int
	limit        int // when > 0, the next batch's size (commits the events before a failing one)

	next  *eventstore.Cursor // the checkpoint this worker just committed, while catching up
	ahead *readAhead         // the next batch, being read on another connection
}

// run processes the partition until ctx ends (nil) or it fails for good. hardCtx
// bounds the batch in hand after ctx ended.
func (w *worker) run(ctx, hardCtx context.Context) error {
	if w.total > 1 {
		// An index for this partition count lets the partition read only its own rows.
		w.indexed, _ = queries.HasPartitionIndex(ctx, w.pool, int32(w.total))
	}
	w.log.Info("partition started", "batch_size", w.cfg.BatchSize, "generation", w.gen, "notify", !w.cfg.DisableNotify, "partition_index", w.indexed)
	lastReport, reported := time.Now(), int64(0)
	defer func() {
		w.dropReadAhead(hardCtx)
		w.log.Info("partition stopped", "events_processed", w.processed)
	}()
	w.refreshRetired(ctx)

	var transient int
	for ctx.Err() == nil {
		if time.Since(lastReport) >= w.cfg.ProgressInterval {
			w.log.Info("progress", "events_processed", w.processed, "since_last", w.processed-reported)
			lastReport, reported = time.Now(), w.processed
		}
		wake := w.wake.C()
		_, full, err := w.batch(ctx, hardCtx)
		switch {
		case err == nil:
			transient = 0
			if full {
				continue
			}
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errFenced):
			w.log.Debug("checkpoint moved by another worker; re-reading")
			continue
		case isTransient(err):
			d := backoff(w.cfg.RetryBackoff, w.cfg.MaxRetryBackoff, transient)
			transient++
			w.log.Warn("database error, retrying", "error", err, "retry_in", d.Round(time.Millisecond))
			sleep(ctx, d)
			continue
		default:
			var hf *handlerFailure
			if !errors.As(err, &hf) {
				return err
			}
			ev := hf.event
			if ev.EventID != w.failID {
				w.failID, w.failAttempts = ev.EventID, 0
			}
			w.failAttempts++
			// Stop only with the failing event first in its batch: the events before it
			// are committed first, so the checkpoint ends right before it.
			if w.failAttempts > w.cfg.MaxRetries && hf.index == 0 {
				herr := &HandlerError{Projection: w.p.Name, Partition: w.key, Total: w.total, Event: ev, Attempts: w.failAttempts, Err: hf.err}
				w.log.Error("handler failed; partition stopped before the event",
					"position", ev.Position.String(), "event_id", ev.EventID, "event_type", ev.Type,
					"aggregate_type", ev.AggregateType, "aggregate_id", ev.AggregateID, "aggregate_version", ev.AggregateVersion,
					"attempts", w.failAttempts, "error", hf.err)
				return herr
			}
			d := backoff(w.cfg.RetryBackoff, w.cfg.MaxRetryBackoff, w.failAttempts-1)
			w.log.Warn("handler failed, retrying", "position", ev.Position.String(), "event_id", ev.EventID,
				"event_type", ev.Type, "aggregate_id", ev.AggregateID, "attempt", w.failAttempts, "error", hf.err,
				"retry_in", d.Round(time.Millisecond))
			if hf.index > 0 {
				// Commit the events before the failing one first, then retry it alone.
				w.limit = hf.index
				continue
			}
			w.limit = 1
			sleep(ctx, d)
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

func (w *worker) refreshRetired(ctx context.Context) {
	has, err := queries.HasRetired(ctx, w.pool, w.p.Name)
	if err != nil {
		w.skipRetired = true // the safe choice
		return
	}
	w.skipRetired = has
}

// batch runs one transaction: read, lock the checkpoint, handle, move the checkpoint.
// It reports how many events it handled and whether the read was full (more may be
// waiting).
func (w *worker) batch(ctx, hardCtx context.Context) (n int, full bool, err error) {
	limit := w.cfg.BatchSize
	if w.limit > 0 {
		limit, w.limit = w.limit, 0 // one smaller batch; run sets it again on a failure
	}
	// A failed batch discards what was read ahead after it.
	defer func() {
		if err != nil || !full {
			w.dropReadAhead(hardCtx)
		}
	}()
	key := dbsqlc.GetCheckpointParams{Projection: w.p.Name, Generation: w.gen, PartitionKey: int32(w.key)}
	var from eventstore.Cursor
	catchingUp := w.next != nil
	var (
		tx    pgx.Tx
		b     eventstore.Batch
		ahead bool
	)
	if catchingUp {
		// Right after a full batch this worker committed: it knows its checkpoint
		// (the lock below checks it). The batch may have been read already, while the
		// last one was handled.
		from, w.next = *w.next, nil
		tx, b, ahead = w.takeReadAhead(hardCtx, from, limit)
	}
	// Until the checkpoint is locked nothing is in hand: reading and waiting for the
	// lock end with ctx. The read comes first and the lock only when there is work, so
	// an idle poll takes no transaction id.
	if !ahead {
		w.dropReadAhead(hardCtx)
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
	}
	// An idle partition's checkpoint follows the head of the stream now and then (on
	// every poll while retired layouts exist, so that they can be dropped), not on
	// every wake-up: it moves past events of other partitions and types, and past
	// running transactions (kept as holes), so that its low watermark stays close to
	// the head.
	followHead := !catchingUp && (w.skipRetired || time.Since(w.lastIdle) >= idleAdvance)
	if !ahead {
		b, err = w.read(ctx, tx, from, limit, w.skipRetired, followHead)
		if err != nil {
			return 0, false, fmt.Errorf("read partition after %s: %w", from, err)
		}
	}
	rows := b.Events
	full = !b.Complete()
	if full {
		// More may be waiting: read the next batch while this one is handled.
		w.startReadAhead(ctx, b.Next(len(rows)), w.cfg.BatchSize)
	}
	to := b.Next(len(rows))
	if followHead {
		to = b.Head()
		w.lastIdle = time.Now()
	}
	if to.Equal(from) {
		return 0, false, nil
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
	retried := false // the event that failed before is in this batch
	hctx := context.WithValue(hardCtx, partitionKey{}, Partition{Projection: w.p.Name, Key: w.key, Total: w.total, Generation: w.gen})
	for i := range rows {
		ev := &rows[i]
		if w.log.Enabled(hctx, slog.LevelDebug) {
			w.log.Debug("handling event", "position", ev.Position.String(), "aggregate_type", ev.AggregateType,
				"aggregate_id", ev.AggregateID, "aggregate_version", ev.AggregateVersion, "event_type", ev.Type, "event_id", ev.EventID)
		}
		if err := handle(hctx, w.p.Handler, tx, ev); err != nil {
			if isTransient(err) {
				return 0, false, fmt.Errorf("handler: %w", err)
			}
			failed := *ev
			failed.Payload, failed.Metadata = nil, nil
			return 0, false, &handlerFailure{index: i, event: failed, err: err}
		}
		if ev.EventID == w.failID {
			retried = true
		}
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
	w.processed += int64(len(rows))
	if full {
		w.next = &to
	}
	if retried {
		w.failID, w.failAttempts = uuid.Nil, 0
	}
	if w.skipRetired && !full {
		w.dropFinishedLayouts(ctx)
	}
	return len(rows), full, nil
}

// handle calls the handler, turning a panic into an error.
func handle(ctx context.Context, h Handler, tx pgx.Tx, ev *eventstore.Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h.Handle(ctx, tx, ev)
}

// dropFinishedLayouts deletes retired layouts that every live checkpoint has passed.
func (w *worker) dropFinishedLayouts(ctx context.Context) {
	n, err := deleteFinishedLayouts(ctx, w.pool, w.p.Name)
	if err != nil {
		w.log.Debug("could not delete finished layouts", "error", err)
		return
	}
	if n > 0 {
		w.log.Info("retired layout carried over completely; deleted its checkpoints", "checkpoints", n)
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
