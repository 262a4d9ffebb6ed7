package projection

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/readsql"
)

// readAhead is a read of a catching-up partition made before the partition needs it,
// on another pool connection, while the events of the current read are handled and
// committed, so that the server produces the next rows while the client works (as
// one streaming read does).
//
// It is the read of step 1 done early: a transaction that has read the events after a
// cursor, not yet locked anything, and taken no transaction id. It is the right read
// for a batch exactly when the batch's checkpoint is at that cursor (position and
// holes), which the partition checks before it takes it, and which the lock and the
// compare-and-set of the batch check again, as for any read. Read ahead at the cursor
// the current read leaves, it is the next read; when that cursor was not reached, it
// is dropped. It is discarded on any failure, fence, rollback, layout change and at
// shutdown.
//
// A projection that is not partitioned keeps two reads in flight when its handlers
// are faster than its reads (it handled the events of its last read in less time than
// the next read took: its read on the server is the limit of its catch-up, and the
// server usually has a core to spare): the next read, and the one after it. With
// slower handlers one read ahead is enough, and the server is spared the second.
// Where the next read will end is not known before it is read, so the read after it
// starts at a predicted cursor: the position of the next read's last event
// (readsql.ReadBoundary finds it and returns only that), with no holes. The
// prediction is made among events that every later snapshot sees alike, so it is
// right unless a transaction running at the next read's snapshot sorts before that
// position; when it is wrong, the read after it starts at a cursor the partition never
// reaches and is dropped, so a prediction costs at most a read, never an event.
type readAhead struct {
	from        eventstore.Cursor // the cursor it reads after (set before known is closed)
	limit       int
	skipRetired bool
	predicted   bool // read at a predicted cursor (readAfter)
	cancel      context.CancelFunc
	known       chan struct{} // closed once from (or that there is none) is known
	noCursor    bool          // set before known is closed: no cursor was predicted
	done        chan struct{}

	// Set before done is closed.
	tx    pgx.Tx
	batch eventstore.Batch
	err   error
	took  time.Duration // how long the read took
}

// maxReadsAhead is how many reads a partition has in flight at most while it catches
// up: two for a projection that is not partitioned (its one partition reads the whole
// stream, and its own read on the server is the limit of its catch-up), else one (the
// partitions of a layout read in parallel already; and a prediction through the
// partition index cannot be read from the index alone).
func (w *worker) maxReadsAhead() int {
	if w.total <= 1 {
		return 2
	}
	return 1
}

// errNoPrediction ends a predicted read whose cursor could not be predicted.
var errNoPrediction = errors.New("no read to predict")

// spare reports whether the pool has a connection to spare (an idle connection or room
// for a new one): a partition never waits for a connection to read ahead, and never
// keeps one from another partition's batch.
func (w *worker) spare() bool {
	st := w.pool.Stat()
	return st.IdleConns() > 0 || st.TotalConns() < st.MaxConns()
}

// startReadAhead makes sure the read after from is read ahead, and, for a projection
// that is not partitioned whose handlers outrun its reads, the read after that one too
// (at a predicted cursor). A read already in flight at from is kept; every other one is
// dropped, except the one predicted to follow the read at from.
func (w *worker) startReadAhead(ctx context.Context, from eventstore.Cursor, limit int) {
	var next *readAhead
	var kept []*readAhead
	for _, ra := range w.ahead {
		switch {
		case next == nil && w.matches(ra, from, limit):
			next = ra
		case next != nil && ra.predictedAfter(next):
			kept = append(kept, ra)
		default:
			w.drop(ctx, ra)
		}
	}
	w.ahead = nil
	if next == nil {
		if !w.spare() {
			return
		}
		next = w.readAt(ctx, from, limit)
	}
	w.ahead = append(append(w.ahead, next), kept...)
	if w.readsBehind && len(w.ahead) < w.maxReadsAhead() && len(from.Holes) == 0 && w.spare() {
		w.ahead = append(w.ahead, w.readAfter(ctx, next, limit))
	}
}

// predictedAfter reports whether ra is a read predicted to follow prev: started after
// it, at the cursor prev was expected to leave.
func (ra *readAhead) predictedAfter(prev *readAhead) bool {
	return ra.limit == prev.limit && ra.skipRetired == prev.skipRetired
}

// readAt starts reading the batch after from on another connection.
func (w *worker) readAt(ctx context.Context, from eventstore.Cursor, limit int) *readAhead {
	rctx, cancel := context.WithCancel(ctx)
	ra := &readAhead{from: from, limit: limit, skipRetired: w.skipRetired, cancel: cancel,
		known: make(chan struct{}), done: make(chan struct{})}
	close(ra.known)
	go func() {
		defer close(ra.done)
		ra.read(rctx, w)
	}()
	return ra
}

// readAfter starts reading, on another connection, the batch after the cursor that the
// read prev (a read after a cursor with no holes) is predicted to leave.
func (w *worker) readAfter(ctx context.Context, prev *readAhead, limit int) *readAhead {
	rctx, cancel := context.WithCancel(ctx)
	ra := &readAhead{limit: limit, skipRetired: prev.skipRetired, cancel: cancel, predicted: true,
		known: make(chan struct{}), done: make(chan struct{})}
	predictedReads.started.Add(1)
	go func() {
		defer close(ra.done)
		tx, err := w.pool.Begin(rctx)
		if err != nil {
			ra.err, ra.noCursor = err, true
			close(ra.known)
			return
		}
		from, ok, err := w.boundary(rctx, tx, prev.from, limit, prev.skipRetired)
		if err == nil && !ok {
			err = errNoPrediction
		}
		ra.from, ra.noCursor = from, err != nil
		close(ra.known)
		if err != nil {
			ra.err = err
			_ = tx.Rollback(context.WithoutCancel(rctx))
			return
		}
		ra.tx = tx
		ra.read(rctx, w)
	}()
	return ra
}

// read reads the batch after ra.from, in ra.tx or a transaction it begins.
func (ra *readAhead) read(ctx context.Context, w *worker) {
	began := time.Now()
	defer func() { ra.took = time.Since(began) }()
	tx := ra.tx
	if tx == nil {
		var err error
		if tx, err = w.pool.Begin(ctx); err != nil {
			ra.err = err
			return
		}
	}
	b, err := w.read(ctx, tx, ra.from, ra.limit, ra.skipRetired, false)
	if err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		ra.tx, ra.err = nil, err
		return
	}
	ra.tx, ra.batch = tx, b
}

// boundary predicts the cursor that a full read after from (a cursor with no holes)
// leaves: its last event's position, with no holes (readsql.ReadBoundary). ok is
// false when fewer events than limit are known to follow.
func (w *worker) boundary(ctx context.Context, tx pgx.Tx, from eventstore.Cursor, limit int, skipRetired bool) (eventstore.Cursor, bool, error) {
	st := readsql.ReadBoundary(readsql.PartitionRead{
		Filter: readsql.Filter{
			AfterTransactionID: from.TransactionID, AfterPosition: from.GlobalPosition,
			TotalPartitions: w.total, PartitionKey: w.key, EventTypes: w.p.EventTypes,
		},
		Limit: limit - predictionSkew, Projection: w.p.Name, SkipRetired: skipRetired, Literal: w.indexed,
	})
	var txID pgtype.Uint64
	var pos int64
	found := true
	err := pinned(ctx, tx, st, func(br pgx.BatchResults) error {
		err := br.QueryRow().Scan(&txID, &pos)
		if errors.Is(err, pgx.ErrNoRows) {
			found, err = false, nil
		}
		return err
	})
	if err != nil || !found {
		return eventstore.Cursor{}, false, err
	}
	return eventstore.Cursor{Position: eventstore.Position{TransactionID: txID.Uint64, GlobalPosition: pos}}, true, nil
}

// matches reports whether ra reads the batch after from with this limit, the way
// this partition reads now. A predicted read that does not know its cursor yet (its
// prediction is still on its way) does not match.
func (w *worker) matches(ra *readAhead, from eventstore.Cursor, limit int) bool {
	select {
	case <-ra.known:
	default:
		return false
	}
	if plantedTrustPrediction {
		return !ra.noCursor && ra.limit == limit
	}
	return !ra.noCursor && ra.limit == limit && ra.skipRetired == w.skipRetired && ra.from.Equal(from)
}

// Set by tests only: plantedTrustPrediction takes a read ahead without checking its
// cursor, and predictionSkew makes every prediction fall that many events
// short, so that the tests show that a read ahead at a cursor the partition does not
// reach is dropped, and that taking one would be caught.
var (
	plantedTrustPrediction bool
	predictionSkew         int
)

// Reads ahead at predicted cursors, for tests and debugging: started, taken as the
// next read, dropped (the cursor was not reached, or the read was not needed).
var predictedReads struct{ started, taken, dropped atomic.Int64 }

// takeReadAhead returns the transaction and events read ahead for a batch after from
// with this limit, if there are any. The reads ahead after it stay; every other one
// is discarded.
func (w *worker) takeReadAhead(ctx context.Context, from eventstore.Cursor, limit int) (pgx.Tx, eventstore.Batch, bool) {
	i := slices.IndexFunc(w.ahead, func(ra *readAhead) bool { return w.matches(ra, from, limit) })
	if i < 0 {
		w.dropReadAhead(ctx)
		return nil, eventstore.Batch{}, false
	}
	ra := w.ahead[i]
	for _, other := range w.ahead[:i] {
		w.drop(ctx, other)
	}
	w.ahead = slices.Clone(w.ahead[i+1:])
	if ra.predicted {
		predictedReads.taken.Add(1)
	}
	// Whether the handlers outrun the reads: the partition handled the events of
	// its last read in less time than this read took to read (counted whether or not
	// this read was predicted, so that predicting does not turn itself off).
	arrived := time.Now()
	<-ra.done
	w.readsBehind = !w.lastTake.IsZero() && arrived.Sub(w.lastTake) < ra.took
	w.lastTake = time.Now()
	ra.cancel()
	if ra.err != nil {
		// Read again in the batch itself: an error there is reported as usual.
		w.dropReadAhead(ctx)
		return nil, eventstore.Batch{}, false
	}
	return ra.tx, ra.batch, true
}

// dropReadAhead discards every read ahead: it stops each read, waits for its
// goroutine and rolls its transaction back.
func (w *worker) dropReadAhead(ctx context.Context) {
	for _, ra := range w.ahead {
		w.drop(ctx, ra)
	}
	w.ahead = nil
}

// drop discards one read ahead.
func (w *worker) drop(ctx context.Context, ra *readAhead) {
	if ra.predicted {
		predictedReads.dropped.Add(1)
	}
	ra.cancel()
	<-ra.done
	if ra.tx != nil {
		_ = ra.tx.Rollback(context.WithoutCancel(ctx))
	}
}
