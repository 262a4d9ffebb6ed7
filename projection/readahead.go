package projection

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/eventstore"
)

// readAhead is the next read of a catching-up partition, read on a second pool
// connection while the events of the current read are handled and committed, so that
// the server produces the next rows while the client works (as one streaming read
// does).
//
// It is the read of step 1 done early: a transaction that has read the events after
// the current read's last event, not yet locked anything, and taken no transaction id.
// It was read at the cursor the current read leaves once all its events are handled
// (position and holes), so it is the right next read exactly when the last batch of
// the current read commits and leaves the checkpoint at that cursor; the lock and the
// compare-and-set of the next batch check that as for any read. It is discarded on
// any failure, fence, rollback, layout change and at shutdown.
type readAhead struct {
	from        eventstore.Cursor
	limit       int
	skipRetired bool
	cancel      context.CancelFunc
	done        chan struct{}

	// Set before done is closed.
	tx    pgx.Tx
	batch eventstore.Batch
	err   error
}

// startReadAhead starts reading the batch after from on another connection, when the
// pool has one to spare (an idle connection or room for a new one): a partition never
// waits for a second connection, and never keeps one from another partition's batch.
func (w *worker) startReadAhead(ctx context.Context, from eventstore.Cursor, limit int) {
	w.dropReadAhead(ctx)
	if st := w.pool.Stat(); st.IdleConns() == 0 && st.TotalConns() >= st.MaxConns() {
		return
	}
	rctx, cancel := context.WithCancel(ctx)
	ra := &readAhead{from: from, limit: limit, skipRetired: w.skipRetired, cancel: cancel, done: make(chan struct{})}
	w.ahead = ra
	go func() {
		defer close(ra.done)
		tx, err := w.pool.Begin(rctx)
		if err != nil {
			ra.err = err
			return
		}
		b, err := w.read(rctx, tx, from, limit, ra.skipRetired, false)
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(rctx))
			ra.err = err
			return
		}
		ra.tx, ra.batch = tx, b
	}()
}

// takeReadAhead returns the transaction and events read ahead for a batch after from
// with this limit, if there are any; otherwise it discards what was read ahead.
func (w *worker) takeReadAhead(ctx context.Context, from eventstore.Cursor, limit int) (pgx.Tx, eventstore.Batch, bool) {
	ra := w.ahead
	if ra == nil {
		return nil, eventstore.Batch{}, false
	}
	if !ra.from.Equal(from) || ra.limit != limit || ra.skipRetired != w.skipRetired {
		w.dropReadAhead(ctx)
		return nil, eventstore.Batch{}, false
	}
	w.ahead = nil
	<-ra.done
	ra.cancel()
	if ra.err != nil {
		// Read again in the batch itself: an error there is reported as usual.
		return nil, eventstore.Batch{}, false
	}
	return ra.tx, ra.batch, true
}

// dropReadAhead discards what was read ahead: it stops the read, waits for its
// goroutine and rolls its transaction back.
func (w *worker) dropReadAhead(ctx context.Context) {
	ra := w.ahead
	if ra == nil {
		return
	}
	w.ahead = nil
	ra.cancel()
	<-ra.done
	if ra.tx != nil {
		_ = ra.tx.Rollback(context.WithoutCancel(ctx))
	}
}
