package eventstore

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"
	"weak"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/generated/dbsqlc"
)

// appendOne appends a single event with one statement (appendEvent: scalar parameters,
// one row back). Where esgen owns the transaction it notifies after the commit: on a pool
// through the pool's [notifier], which lets concurrent appends share a notification;
// on a connection in the pipeline of the append (see appendOwnOne).
func appendOne(ctx context.Context, db DBTX, p dbsqlc.AppendEventParams, expected ExpectedVersion) (AppendResult, error) {
	var (
		row dbsqlc.AppendEventRow
		err error
	)
	switch d := db.(type) {
	case *pgxpool.Pool:
		row, err = notifierOf(d).appendPooled(ctx, d, p)
	default:
		conn, release, own, cerr := ownConn(ctx, db)
		switch {
		case cerr != nil:
			err = cerr
		case own:
			row, err = appendOwnOne(ctx, conn, p, notifyAfterSQL)
			release()
		default:
			// The caller's transaction (or a quiet connection): the function notifies
			// at the commit unless esgen.notify is off.
			p.NotifyInTransaction = true
			row, err = appendEvent(ctx, db, p)
		}
	}
	if err != nil {
		return AppendResult{}, appendError(err, 1, p.AggregateType, p.AggregateID, expected)
	}
	return AppendResult{Version: row.AggregateVersion, Positions: []int64{row.GlobalPosition}}, nil
}

// appendEvent runs the single-event append statement for p's expected version: AppendEvent
// (any version, or a new aggregate) or AppendEventAt (exactly version n).
func appendEvent(ctx context.Context, db dbsqlc.DBTX, p dbsqlc.AppendEventParams) (dbsqlc.AppendEventRow, error) {
	if p.ExpectedVersion > 0 {
		row, err := queries.AppendEventAt(ctx, db, dbsqlc.AppendEventAtParams(p))
		return dbsqlc.AppendEventRow(row), err
	}
	return queries.AppendEvent(ctx, db, p)
}

// appendOwnOne appends one event in a transaction of its own on conn and sends notify
// after the commit (ownTransaction); the statement itself does not notify.
func appendOwnOne(ctx context.Context, conn *pgx.Conn, p dbsqlc.AppendEventParams, notify string) (dbsqlc.AppendEventRow, error) {
	var st captured
	p.NotifyInTransaction = false
	if _, err := appendEvent(ctx, &st, p); !errors.Is(err, errCaptured) {
		return dbsqlc.AppendEventRow{}, err
	}
	var row dbsqlc.AppendEventRow
	err := ownTransaction(ctx, conn, "", st, notify, func(br pgx.BatchResults) error {
		return br.QueryRow().Scan(&row.GlobalPosition, &row.AggregateVersion, &row.Notify)
	})
	return row, err
}

// notifyGap is the least time between the starts of two notifications that a pool's
// flush sends one after the other: commits that come while one is on its way wait for
// the next at most this long (plus its round trip), and a busy pool sends at most about
// one notification per gap.
var notifyGap = time.Millisecond

// flushTimeout bounds one notification of a pool's flush (a connection to wait for, a
// server that does not answer): past it the notification is given up, and the pool's
// next commits get a new one.
const flushTimeout = 10 * time.Second

// notifiers holds the notifier of each pool that appended (weak.Pointer to the
// *pgxpool.Pool → *notifier); an entry goes when its pool is garbage collected.
var notifiers sync.Map

func notifierOf(pool *pgxpool.Pool) *notifier {
	key := weak.Make(pool)
	if n, ok := notifiers.Load(key); ok {
		return n.(*notifier)
	}
	// Pool.Config copies the configuration: look at it once per pool.
	n, loaded := notifiers.LoadOrStore(key, &notifier{combiner: combiner{slots: combineSlots}, quiet: quiet(pool.Config().ConnConfig)})
	if !loaded {
		runtime.AddCleanup(pool, func(k weak.Pointer[pgxpool.Pool]) { notifiers.Delete(k) }, key)
	}
	return n.(*notifier)
}

// notifier lets the single-event appends of one pool share their notifications: a
// notification wakes the listeners for every append that committed before it was
// sent, so one sent after several commits covers them all, and NOTIFY's server-wide
// lock is taken once for them instead of once each.
//
// At most one notification of the pool is on its way at a time. An append that finds
// none on its way carries one in its own pipeline (BEGIN, append, COMMIT, notify: one
// round trip, as a lone writer always does), which covers the commits registered
// before it. One that finds a notification on its way appends alone (one statement in
// an implicit transaction of its own), registers its commit and returns; the commit is
// covered by the next notification: one carried by a later append, or one sent by a
// goroutine that the end of the notification on its way (or the registration, when
// none is) starts while commits are left uncovered, and that sends them one after the
// other, notifyGap apart, while commits keep coming. So a listener is woken about a
// round trip (at most notifyGap more) after the commit, and the concurrent appends of a
// busy pool send one notification between them per round trip or notifyGap instead of
// one each.
type notifier struct {
	combiner
	quiet    bool // the pool's connections start with esgen.notify = off
	mu       sync.Mutex
	commits  uint64 // commits registered so far, numbered from 1
	covered  uint64 // the commits up to this number have been notified after
	inflight bool   // a notification is on its way
	upTo     uint64 // the commits the notification on its way covers
}

// end records the end of the notification on its way, sent (ok) or not, and starts a
// flush when commits are left uncovered.
func (n *notifier) end(pool *pgxpool.Pool, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ok {
		n.covered = max(n.covered, n.upTo)
	}
	n.inflight = false
	n.flushLocked(pool)
}

// flushLocked starts a goroutine that notifies until every registered commit is
// covered, unless a notification is on its way or nothing is uncovered. n.mu is held.
func (n *notifier) flushLocked(pool *pgxpool.Pool) {
	if n.inflight || n.covered >= n.commits {
		return
	}
	n.inflight, n.upTo = true, n.commits
	go n.flush(pool)
}

// flush sends notifications on a connection of the pool until every registered commit
// is covered. A notification that fails (the pool was closed, the server is gone)
// is given up: its listeners find the events at their next poll.
func (n *notifier) flush(pool *pgxpool.Pool) {
	for {
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		_, _ = pool.Exec(ctx, notifyOwnSQL)
		cancel()
		n.mu.Lock()
		n.covered = max(n.covered, n.upTo) // sent, or given up
		if n.covered >= n.commits {
			n.inflight = false
			n.mu.Unlock()
			return
		}
		n.mu.Unlock()
		// More commits came meanwhile: let a few more join them before notifying again.
		time.Sleep(time.Until(sent.Add(notifyGap)))
		n.mu.Lock()
		n.upTo = n.commits
		n.mu.Unlock()
	}
}

func (n *notifier) append(ctx context.Context, pool *pgxpool.Pool, p dbsqlc.AppendEventParams) (dbsqlc.AppendEventRow, error) {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return dbsqlc.AppendEventRow{}, err
	}
	defer c.Release()
	conn := c.Conn()

	n.mu.Lock()
	if !n.inflight {
		// Carry the notification: it covers this append and every commit registered
		// before it is sent. When it covers others, it is sent whatever this session's
		// esgen.notify says.
		n.inflight, n.upTo = true, n.commits
		others := n.upTo > n.covered
		n.mu.Unlock()
		notify := notifyAfterSQL
		if others {
			notify = notifyOwnSQL
		}
		row, err := appendOwnOne(ctx, conn, p, notify)
		n.end(pool, err == nil)
		return row, err
	}
	n.mu.Unlock()

	p.NotifyInTransaction = false
	row, err := appendEvent(ctx, conn, p)
	if err != nil {
		return dbsqlc.AppendEventRow{}, err // its implicit transaction ended with the error
	}
	if row.Notify { // unless this session has esgen.notify = off
		n.register(pool)
	}
	return row, nil
}

// register records a commit that the pool's next notification is to cover, and
// starts a flush when none is on its way.
func (n *notifier) register(pool *pgxpool.Pool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.commits++
	n.flushLocked(pool)
}
