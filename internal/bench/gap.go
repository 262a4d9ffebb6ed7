package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
)

// The transactions the holes scenario keeps open while a worker catches up: some
// in another database that only took a transaction id, some that appended to the
// event store being read. Each becomes a hole of the checkpoint.
const (
	holesOtherDatabase = 4
	holesAppending     = 4
	gapHoles           = holesOtherDatabase + holesAppending
)

// heldEvents is the number of events the held appending transaction of the latency
// scenario appends before it waits.
const heldEvents = 10

// Names of the gap-safety rows. They do not change with the hold (see
// Result.HoldSeconds), so that a script finds them in every run.
const (
	gapCatchUpFree  = "catch-up, no-op handler, 1 worker, no transaction open"
	gapCatchUpHoles = "catch-up, no-op handler, 1 worker, carrying 8 holes"
	gapLatencyOther = "append → handled, NOTIFY, a transaction in another database open"
	gapLatencyAppnd = "append → handled, NOTIFY, an appending transaction open"
	gapLatencyOwn   = "the appending transaction's own events, commit → handled"
)

// heldTx is a transaction kept open on a connection of its own.
type heldTx struct {
	conn *pgxpool.Conn
	tx   pgx.Tx
	xid  uint64
	once sync.Once
}

// holdTransaction begins a transaction on a connection of pool, runs write in it
// (nil: only take a transaction id, touching no table) and keeps it open until end
// is called.
func holdTransaction(ctx context.Context, pool *pgxpool.Pool, write func(context.Context, pgx.Tx) error) (*heldTx, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		conn.Release()
		return nil, err
	}
	h := &heldTx{conn: conn, tx: tx}
	if write != nil {
		err = write(ctx, tx)
	}
	var xid pgtype.Uint64
	if err == nil {
		err = tx.QueryRow(ctx, `SELECT pg_current_xact_id()`).Scan(&xid)
	}
	if err != nil {
		_ = h.end(ctx, false)
		return nil, err
	}
	h.xid = xid.Uint64
	return h, nil
}

// end commits or rolls back the transaction and gives its connection back; later
// calls do nothing.
func (h *heldTx) end(ctx context.Context, commit bool) error {
	var err error
	h.once.Do(func() {
		ctx := context.WithoutCancel(ctx)
		if commit {
			err = h.tx.Commit(ctx)
		} else {
			err = h.tx.Rollback(ctx)
		}
		h.conn.Release()
	})
	return err
}

// otherDatabase creates an empty database beside the group's (the transactions held
// there touch no esgen table) and returns a pool on it and a function that closes
// the pool and drops the database.
func (r *runner) otherDatabase(ctx context.Context, maxConns int32) (*pgxpool.Pool, func(), error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "esgen_bench_" + hex.EncodeToString(b[:]) + "_other"
	url, err := r.srv.CreateDatabase(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = r.srv.DropDatabase(ctx, name)
	}
	pool, err := newPool(ctx, url, maxConns)
	if err != nil {
		drop()
		return nil, nil, err
	}
	return pool, func() { pool.Close(); drop() }, nil
}

// gapGroup measures what a long transaction costs the readers: catch-up while the
// checkpoint carries holes, and the delivery of appends made while a transaction in
// another database, or one that appended, stays open.
func (r *runner) gapGroup(ctx context.Context) error {
	pool, url, done, err := r.database(ctx, GroupGap, 8)
	if err != nil {
		return err
	}
	defer done()
	other, otherDone, err := r.otherDatabase(ctx, holesOtherDatabase+1)
	if err != nil {
		return err
	}
	defer otherDone()
	// The catch-up rows count the rows read from esgen_events (pg_stat_user_tables,
	// which a backend reports at the latest when it ends): they run on pools of their
	// own, and this one is closed until the latency rows.
	pool.Close()
	if err := r.gapCatchUp(ctx, url, other); err != nil {
		return err
	}
	if pool, err = newPool(ctx, url, 8); err != nil {
		return err
	}
	defer pool.Close()
	if err := r.gapLatencyOther(ctx, pool, other); err != nil {
		return fmt.Errorf("%s: %w", gapLatencyOther, err)
	}
	if err := r.gapLatencyAppending(ctx, pool); err != nil {
		return fmt.Errorf("%s: %w", gapLatencyAppnd, err)
	}
	r.note("gap-safety latency rows: the transaction held open %s; appends one event per transaction every %s, timed from just before Append (the appending transaction's own events: from just before its COMMIT) to the start of the handler",
		r.cfg.Hold, appendInterval)
	return nil
}

// gapCatchUp reads a preloaded stream with one worker twice: while gapHoles
// transactions that began before the stream was written stay open (every checkpoint
// carries them as holes), and after they ended; both against the raw streaming read
// of the same stream, taken after they ended, before and after the second catch-up
// (the faster counts).
func (r *runner) gapCatchUp(ctx context.Context, url string, other *pgxpool.Pool) error {
	holdPool, err := newPool(ctx, url, holesAppending)
	if err != nil {
		return err
	}
	defer holdPool.Close()
	var held []*heldTx
	defer func() {
		for _, h := range held {
			_ = h.end(ctx, false)
		}
	}()
	for range holesOtherDatabase {
		h, err := holdTransaction(ctx, other, nil)
		if err != nil {
			return fmt.Errorf("open a transaction in another database: %w", err)
		}
		held = append(held, h)
	}
	for i := range holesAppending {
		h, err := holdTransaction(ctx, holdPool, func(ctx context.Context, tx pgx.Tx) error {
			_, err := eventstore.Append(ctx, tx, "Held", "held-"+strconv.Itoa(i), eventstore.Any,
				eventstore.EventData{Type: "HeldOpen", Payload: []byte(`{}`)})
			return err
		})
		if err != nil {
			return fmt.Errorf("open an appending transaction: %w", err)
		}
		held = append(held, h)
	}
	// The appending transactions hold locks on esgen_events: the stream is loaded with
	// the indexes in place.
	loadPool, err := newPool(ctx, url, 4)
	if err != nil {
		return err
	}
	start := time.Now()
	n, err := loadStream(ctx, loadPool, max(r.cfg.CatchUpEvents/4, 10_000), true)
	loaded := time.Since(start)
	if err == nil {
		// Every row's visibility checked once, so that no reader below sets hint bits.
		_, err = loadPool.Exec(ctx, `SELECT count(*) FROM esgen_events`)
	}
	loadPool.Close()
	if err != nil {
		return err
	}
	pool, err := newPool(ctx, url, 2)
	if err != nil {
		return err
	}
	defer pool.Close()

	spec := catchUpSpec{Database: url, Projection: "bench_gap_holes", Handler: handlerNoop, Partitions: []int{0}, Total: 1, Target: int64(n)}
	holes, err := r.inProcess(ctx, pool, url, spec)
	if err != nil {
		return fmt.Errorf("%s: %w", gapCatchUpHoles, err)
	}
	var carried int
	if err := pool.QueryRow(ctx, `SELECT cardinality(hole_transaction_ids) FROM esgen_checkpoints WHERE projection = $1`,
		spec.Projection).Scan(&carried); err != nil {
		return fmt.Errorf("%s: checkpoint: %w", gapCatchUpHoles, err)
	}
	if carried < gapHoles {
		return fmt.Errorf("%s: the checkpoint carries %d holes, want at least %d", gapCatchUpHoles, carried, gapHoles)
	}
	for _, h := range held {
		if err := h.end(ctx, false); err != nil {
			return err
		}
	}

	raw, err := r.rawRead(ctx, pool, url)
	if err != nil {
		return fmt.Errorf("raw read: %w", err)
	}
	spec.Projection = "bench_gap_free"
	free, err := r.inProcess(ctx, pool, url, spec)
	if err != nil {
		return fmt.Errorf("%s: %w", gapCatchUpFree, err)
	}
	again, err := r.rawRead(ctx, pool, url)
	if err != nil {
		return fmt.Errorf("raw read: %w", err)
	}
	r.note("gap-safety catch-up stream: %d events, loaded in %.1f s with the indexes in place (%d transactions were open); raw streaming SELECT %.0f events/s before the catch-up without holes, %.0f after; the table shows the faster",
		n, loaded.Seconds(), gapHoles, raw.EventsPerSec, again.EventsPerSec)
	if again.EventsPerSec > raw.EventsPerSec {
		raw = again
	}
	raw.Group = GroupGap
	r.add(raw)
	free.Group, free.Name, free.RawName = GroupGap, gapCatchUpFree, rawReadName
	r.add(free)
	holes.Group, holes.Name, holes.RawName, holes.Holes = GroupGap, gapCatchUpHoles, rawReadName, carried
	holes.Note = fmt.Sprintf("%d transactions in another database and %d that appended one event each, open from before the stream was written until the worker was done: every checkpoint carried them as holes",
		holesOtherDatabase, holesAppending)
	r.add(holes)
	return nil
}

// heldWindow is when a transaction of a latency scenario was open.
type heldWindow struct {
	mu       sync.Mutex
	from, to time.Time
}

func (w *heldWindow) set(from, to time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.from, w.to = from, to
}

func (w *heldWindow) get() (time.Time, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.from, w.to
}

// gapSamples is the number of appends of a gap latency scenario: enough to go on for
// the whole hold.
func (r *runner) gapSamples() int {
	return max(int(r.cfg.Hold/appendInterval)+5, 10)
}

// gapLatencyOther times appends made while a transaction in another database holds
// a transaction id.
func (r *runner) gapLatencyOther(ctx context.Context, pool, other *pgxpool.Pool) error {
	hold := r.cfg.Hold
	var win heldWindow
	start := time.Now()
	o, err := latencyRun{pool: pool, name: "bench_gap_other", notify: true, samples: r.gapSamples(),
		during: func(ctx context.Context, _ string) error {
			h, err := holdTransaction(ctx, other, nil)
			if err != nil {
				return err
			}
			from := time.Now()
			sleep(ctx, hold)
			win.set(from, time.Now())
			return h.end(ctx, false)
		}}.run(ctx)
	if err != nil {
		return err
	}
	lats := o.within(win.get())
	if len(lats) == 0 {
		return fmt.Errorf("no append was made while the transaction was open")
	}
	res := latencyResult(GroupGap, gapLatencyOther, lats, time.Since(start))
	res.HoldSeconds = hold.Seconds()
	res.Note = fmt.Sprintf("appends made while a transaction in another database of the server held a transaction id (open %s)", hold)
	r.add(res)
	return nil
}

// gapLatencyAppending times appends made while a transaction that appended to the
// same event store stays open, and the delivery of that transaction's own events
// once it commits.
func (r *runner) gapLatencyAppending(ctx context.Context, pool *pgxpool.Pool) error {
	hold := r.cfg.Hold
	var win heldWindow
	start := time.Now()
	o, err := latencyRun{pool: pool, name: "bench_gap_appending", notify: true, samples: r.gapSamples(), held: heldEvents,
		during: func(ctx context.Context, eventType string) error {
			h, err := holdTransaction(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
				for i := range heldEvents {
					if _, err := eventstore.Append(ctx, tx, "Probe", "held-"+strconv.Itoa(i), eventstore.Any,
						eventstore.EventData{Type: eventType, Payload: []byte(`{"held":true}`)}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			from := time.Now()
			sleep(ctx, hold)
			win.set(from, time.Now()) // just before COMMIT
			return h.end(ctx, true)
		}}.run(ctx)
	if err != nil {
		return err
	}
	from, committed := win.get()
	lats := o.within(from, committed)
	if len(lats) == 0 {
		return fmt.Errorf("no append was made while the transaction was open")
	}
	elapsed := time.Since(start)
	res := latencyResult(GroupGap, gapLatencyAppnd, lats, elapsed)
	res.HoldSeconds = hold.Seconds()
	res.Note = fmt.Sprintf("appends made while a transaction that appended %d events to the same store stayed open %s", heldEvents, hold)
	r.add(res)
	own := make([]time.Duration, len(o.held))
	for i, t := range o.held {
		own[i] = t.Sub(committed)
	}
	res = latencyResult(GroupGap, gapLatencyOwn, own, elapsed)
	res.HoldSeconds = hold.Seconds()
	res.Note = fmt.Sprintf("the %d events of the transaction held open %s, from just before its COMMIT to the start of the handler", heldEvents, hold)
	r.add(res)
	return nil
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
