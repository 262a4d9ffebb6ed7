package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/generated/dbsqlc"
)

// notifyChannel is the channel appends notify (esgen_append and the single-event
// statement notify it too).
const notifyChannel = "esgen_events"

const (
	// deferSQL makes the appends of the current transaction skip their in-transaction
	// pg_notify (esgen_append and the single-event statement read the setting).
	deferSQL = `SELECT set_config('esgen.notify', 'off', true)`
	// notifySQL notifies in the transaction it runs in.
	notifySQL = `SELECT pg_notify('` + notifyChannel + `', '')`
	// notifyOwnSQL is a notification sent as a transaction of its own (an implicit
	// one: a statement outside BEGIN … COMMIT). NOTIFY gives its transaction an id, so
	// that transaction writes a commit record, and it holds NOTIFY's server-wide lock
	// from just before its commit until the commit is done; on a durable server that is
	// through a WAL flush, during which no other notifying transaction commits.
	// synchronous_commit = off for this transaction alone lets its commit return
	// without waiting for the flush: nothing is lost, notifications do not outlive a
	// restart anyway.
	notifyOwnSQL = `SELECT set_config('synchronous_commit', 'off', true), pg_notify('` + notifyChannel + `', '')`
	// notifyAfterSQL is notifyOwnSQL for an esgen-owned transaction after its commit,
	// unless the session turned notifications off (esgen.notify = off).
	notifyAfterSQL = notifyOwnSQL + ` WHERE coalesce(current_setting('esgen.notify', true), '') <> 'off'`
)

// DeferNotify makes the appends of the caller's transaction tx skip their notification,
// so that the transaction does not hold NOTIFY's server-wide lock through its commit
// (which makes notifying transactions commit one at a time). Call it in tx before the
// first [Append], and call [NotifyAppended] once tx has committed: nothing else wakes
// listening projections at once (they find the events at their next poll). A
// transaction that rolls back notifies nobody either way.
//
// Appends that esgen runs in a transaction of its own (Append given a pool, or a
// connection outside a transaction) already notify after their commit; DeferNotify is
// for appends in a transaction of the caller's, which by default notify at their
// commit, inside it.
func DeferNotify(ctx context.Context, tx DBTX) error {
	if _, err := tx.Exec(ctx, deferSQL); err != nil {
		return fmt.Errorf("eventstore: defer the notification: %w", err)
	}
	return nil
}

// NotifyAppended wakes the projections listening for appends (pg_notify on
// esgen_events, in a transaction of its own when db is a pool or a connection). Call
// it after committing a transaction whose appends did not notify ([DeferNotify]), on
// the same connection or any other. A notification says only "look again"; a spare one
// costs the listeners one empty read.
func NotifyAppended(ctx context.Context, db DBTX) error {
	st := notifySQL
	if _, ok := db.(*pgxpool.Pool); ok {
		st = notifyOwnSQL // a transaction of its own
	}
	if _, err := db.Exec(ctx, st); err != nil {
		return fmt.Errorf("eventstore: notify %s: %w", notifyChannel, err)
	}
	return nil
}

// ownConn returns the connection to append on in a transaction of esgen's own, and a
// release function, when db is not in a transaction of the caller's: a pool, a pool's
// connection or a connection that is idle (not inside BEGIN … COMMIT). Connections
// configured with esgen.notify = off (?esgen.notify=off in their URL) do not notify at
// all, so their appends stay a single statement in a transaction of its own.
func ownConn(ctx context.Context, db DBTX) (*pgx.Conn, func(), bool, error) {
	switch d := db.(type) {
	case *pgxpool.Pool:
		if notifierOf(d).quiet {
			return nil, nil, false, nil
		}
		c, err := d.Acquire(ctx)
		if err != nil {
			return nil, nil, true, err
		}
		return c.Conn(), c.Release, true, nil
	case *pgxpool.Conn:
		if d.Conn().PgConn().TxStatus() == 'I' && !quiet(d.Conn().Config()) {
			return d.Conn(), func() {}, true, nil
		}
	case *pgx.Conn:
		if d.PgConn().TxStatus() == 'I' && !quiet(d.Config()) {
			return d, func() {}, true, nil
		}
	}
	return nil, nil, false, nil
}

// quiet reports whether connections of cfg start with esgen.notify = off. (A session
// that turns it off with SET is not seen here; its appends take the pipeline, which
// then sends no notification either.)
func quiet(cfg *pgx.ConnConfig) bool {
	return cfg != nil && cfg.RuntimeParams["esgen.notify"] == "off"
}

// errCaptured ends a generated query at its first statement: see captured.
var errCaptured = errors.New("eventstore: statement captured")

// captured records the statement a generated query would send, so that it can be sent
// in a pipeline with others (the statement's text stays in one place, sql/queries).
type captured struct {
	sql  string
	args []any
}

func (c *captured) Query(_ context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.sql, c.args = sql, args
	return nil, errCaptured
}

func (c *captured) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, errors.New("eventstore: Exec not captured")
}

func (c *captured) QueryRow(_ context.Context, sql string, args ...any) pgx.Row {
	c.sql, c.args = sql, args
	return errRow{errCaptured}
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// appendOwn appends in a transaction of its own on conn and notifies after the commit
// (ownTransaction), with esgen_append's own notification turned off for the
// transaction.
func appendOwn(ctx context.Context, conn *pgx.Conn, p dbsqlc.AppendEventsParams) ([]dbsqlc.AppendEventsRow, error) {
	var st captured
	if _, err := queries.AppendEvents(ctx, &st, p); !errors.Is(err, errCaptured) {
		return nil, err
	}
	var out []dbsqlc.AppendEventsRow
	err := ownTransaction(ctx, conn, deferSQL, st, notifyAfterSQL, func(br pgx.BatchResults) (err error) {
		out, err = scanAppended(br)
		return err
	})
	return out, err
}

// ownTransaction runs an append (st, captured from a generated query) in a
// transaction of its own on conn and sends notify (a statement) after the commit, in
// one round trip: BEGIN, pre (a statement, or ""), the append, whose results scan
// reads, COMMIT, then notify, sent as one pipeline. The server runs the pipeline's
// statements in order and skips every statement after an error up to the pipeline's
// end, so the notification runs only after the commit succeeded, as a transaction of
// its own (notifyOwnSQL: its commit waits for no WAL flush), and NOTIFY's server-wide
// lock is held only for that commit, never through the append's.
func ownTransaction(ctx context.Context, conn *pgx.Conn, pre string, st captured, notify string, scan func(pgx.BatchResults) error) error {
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	if pre != "" {
		b.Queue(pre)
	}
	b.Queue(st.sql, st.args...)
	b.Queue("COMMIT")
	b.Queue(notify)
	br := conn.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil && pre != "" {
		_, err = br.Exec()
	}
	if err == nil {
		err = scan(br)
	}
	if err == nil {
		_, err = br.Exec() // COMMIT
	}
	if err == nil {
		_, err = br.Exec() // notify
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// A failed statement leaves the transaction aborted: end it, so that the
		// connection can be used again (a pool drops a connection returned in a
		// transaction).
		if !conn.IsClosed() && conn.PgConn().TxStatus() != 'I' {
			_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
		return err
	}
	return nil
}

func scanAppended(br pgx.BatchResults) ([]dbsqlc.AppendEventsRow, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []dbsqlc.AppendEventsRow
	for rows.Next() {
		var r dbsqlc.AppendEventsRow
		if err := rows.Scan(&r.GlobalPosition, &r.AggregateVersion); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
