package eventstore

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/generated/dbsqlc"
)

// Single-event appends that the callers of one pool make at the same moment share
// statements: at most combineSlots of them run at once, each its own statement as
// before; an append that finds every slot taken waits, and when a slot frees, the
// appends waiting for it run together, one event for each of up to combineMax
// distinct aggregates in one statement (AppendCombined) and one commit. A lone
// writer never waits and runs as before.
//
// Each append in a combined statement keeps the rules of an append of its own (the
// aggregate's lock before the transaction id, its expected version, the head not
// written by a younger transaction); one that the statement leaves out (its
// aggregate's lock is held elsewhere, its version does not match) or that a failed
// statement took down with it (nothing is written when a statement fails) is run
// again alone by its caller, which so gets the error or the result an append of its
// own gets. The events of one combined statement become visible to readers at one
// commit.
const (
	combineSlots = 2
	combineMax   = 64
)

// combiner is the state of a pool's combined appends; it is part of the pool's
// notifier.
type combiner struct {
	slots    int // combineSlots (tests take fewer)
	cmu      sync.Mutex
	running  int          // slots taken: appends running alone and combined statements
	queue    []*waiting   // appends waiting for a slot, oldest first
	combined atomic.Int64 // appends written by combined statements
}

// waiting is an append waiting for a slot, then for its combined statement.
type waiting struct {
	ctx   context.Context
	p     dbsqlc.AppendEventParams
	wake  chan struct{} // closed when this append leads a batch, has its result or is to run alone
	batch []*waiting    // the appends this one runs (itself first), when it leads
	row   dbsqlc.AppendEventRow
	err   error
	alone bool // left out of the combined statement: the caller runs it alone
}

// appendPooled appends p on pool: alone when a slot is free, else combined with the
// appends that wait with it.
func (n *notifier) appendPooled(ctx context.Context, pool *pgxpool.Pool, p dbsqlc.AppendEventParams) (dbsqlc.AppendEventRow, error) {
	n.cmu.Lock()
	if n.running < n.slots {
		n.running++
		n.cmu.Unlock()
		row, err := n.appendAlone(ctx, pool, p)
		n.handOver()
		return row, err
	}
	w := &waiting{ctx: ctx, p: p, wake: make(chan struct{})}
	n.queue = append(n.queue, w)
	n.cmu.Unlock()

	select {
	case <-w.wake:
	case <-ctx.Done():
		n.cmu.Lock()
		if i := slices.Index(n.queue, w); i >= 0 {
			n.queue = slices.Delete(n.queue, i, i+1)
			n.cmu.Unlock()
			return dbsqlc.AppendEventRow{}, ctx.Err()
		}
		n.cmu.Unlock()
		// Taken into a batch already: its statement is on its way; wait for it.
		<-w.wake
	}
	if w.batch != nil {
		if len(w.batch) == 1 {
			w.row, w.err = n.appendAlone(ctx, pool, p)
		} else {
			n.runCombined(pool, w.batch)
		}
		n.handOver()
	}
	if w.alone {
		return n.appendAlone(ctx, pool, p)
	}
	return w.row, w.err
}

// appendAlone is one append in a statement of its own.
func (n *notifier) appendAlone(ctx context.Context, pool *pgxpool.Pool, p dbsqlc.AppendEventParams) (dbsqlc.AppendEventRow, error) {
	if n.quiet {
		// No notification at all: the append alone, one statement.
		return appendEvent(ctx, pool, p)
	}
	return n.append(ctx, pool, p)
}

// handOver passes the slot of an append or a combined statement that ended to the
// appends waiting (the oldest of them leads a batch of distinct aggregates), or frees
// it when none wait.
func (n *notifier) handOver() {
	n.cmu.Lock()
	defer n.cmu.Unlock()
	if len(n.queue) == 0 {
		n.running--
		return
	}
	type key struct{ typ, id string }
	seen := make(map[key]bool, min(len(n.queue), combineMax))
	var batch []*waiting
	rest := n.queue[:0]
	for _, w := range n.queue {
		k := key{w.p.AggregateType, w.p.AggregateID}
		if len(batch) == combineMax || seen[k] {
			// A second append to an aggregate waits for the next batch: one
			// statement writes an aggregate's head once.
			rest = append(rest, w)
			continue
		}
		seen[k] = true
		batch = append(batch, w)
	}
	clear(n.queue[len(rest):])
	n.queue = rest
	lead := batch[0]
	lead.batch = batch
	close(lead.wake)
}

// runCombined appends the events of batch (distinct aggregates) in one statement and
// gives each append its result, or marks it to run alone. The statement is cancelled
// only when every append of the batch has been cancelled.
func (n *notifier) runCombined(pool *pgxpool.Pool, batch []*waiting) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(batch[0].ctx))
	defer cancel()
	var left atomic.Int32
	left.Store(int32(len(batch)))
	for _, w := range batch {
		stop := context.AfterFunc(w.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
		defer stop()
	}

	rows, err := queries.AppendCombined(ctx, pool, combinedParams(batch))
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		// The statement failed and wrote nothing (one bad event fails all): each
		// append runs alone and gets its own result or error.
		for _, w := range batch {
			w.alone = true
		}
	case err != nil:
		// The connection failed: whether the statement committed is unknown, as for
		// an append of its own.
		for _, w := range batch {
			w.err = err
		}
	default:
		done := make([]bool, len(batch))
		notify := false
		for _, r := range rows {
			i := int(r.Ord) - 1
			if i < 0 || i >= len(batch) || done[i] {
				continue
			}
			done[i] = true
			batch[i].row = dbsqlc.AppendEventRow{GlobalPosition: r.GlobalPosition, AggregateVersion: r.AggregateVersion, Notify: r.Notify}
			notify = notify || r.Notify
		}
		n.combined.Add(int64(len(rows)))
		for i, w := range batch {
			w.alone = !done[i]
		}
		if notify {
			// One commit: the pool's next notification covers it.
			n.register(pool)
		}
	}
	for _, w := range batch[1:] {
		close(w.wake)
	}
}

// combinedParams are AppendCombined's arrays for batch, row i for batch[i].
func combinedParams(batch []*waiting) dbsqlc.AppendCombinedParams {
	k := len(batch)
	a := dbsqlc.AppendCombinedParams{
		AggregateTypes:   make([]string, k),
		AggregateIds:     make([]string, k),
		ExpectedVersions: make([]int64, k),
		EventIds:         make([]pgtype.UUID, k),
		EventTypes:       make([]string, k),
		EventVersions:    make([]int32, k),
		PartitionHashes:  make([]int64, k),
		Payloads:         make([][]byte, k),
		Metadata:         make([][]byte, k),
		CorrelationIds:   make([]pgtype.UUID, k),
		CausationIds:     make([]pgtype.UUID, k),
	}
	for i, w := range batch {
		p := w.p
		a.AggregateTypes[i], a.AggregateIds[i], a.ExpectedVersions[i] = p.AggregateType, p.AggregateID, p.ExpectedVersion
		a.EventIds[i], a.EventTypes[i], a.EventVersions[i] = p.EventID, p.EventType, p.EventVersion
		a.PartitionHashes[i], a.Payloads[i], a.Metadata[i] = p.PartitionHash, p.Payload, p.Metadata
		a.CorrelationIds[i], a.CausationIds[i] = p.CorrelationID, p.CausationID
	}
	return a
}
