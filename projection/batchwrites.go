package projection

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Queue returns a connection for the batch's transaction tx (the one a [Handler] is
// given) whose Exec does not go to the server at once: the statement is queued and
// sent together with the other queued writes of the batch, as one pipeline, before the
// batch commits. Writes of a batch of events then cost one round trip in all instead of
// one each. Use it for writes whose result the handler does not need: Exec returns an
// empty command tag (no RowsAffected) and a nil error; a statement that fails later
// fails the event that queued it, which is then retried and stops the partition as any
// handler error does.
//
// Reads see the queued writes: a Query or QueryRow through the returned value or
// through tx itself first sends what is queued. So does any other use of tx.
//
// The value fits the DBTX of sqlc-generated queries (Exec, Query, QueryRow):
// readmodel.New(projection.Queue(tx)). Outside a batch of the runtime (a plain pgx.Tx
// in a test), Queue returns tx itself and nothing is queued.
func Queue(tx pgx.Tx) DBTXQueue {
	if b, ok := tx.(*batchTx); ok {
		return queued{b}
	}
	return tx
}

// DBTXQueue is what [Queue] returns: the DBTX of sqlc-generated code.
type DBTXQueue interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// batchTx is the transaction a batch's handlers get: a pgx.Tx that sends the writes
// queued through [Queue] before anything else it does, so that everything reaches the
// server in the order the handlers issued it.
type batchTx struct {
	pgx.Tx
	pending pgx.Batch
	owners  []int // for each queued statement, the index of the event that queued it
	event   int   // the index of the event being handled
}

func newBatchTx(tx pgx.Tx) *batchTx { return &batchTx{Tx: tx} }

// flush sends the queued statements as one pipeline. When one fails, the error says
// which event queued it (a *queuedError).
func (b *batchTx) flush(ctx context.Context) error {
	n := b.pending.Len()
	if n == 0 {
		return nil
	}
	owners := b.owners
	batch := b.pending
	b.pending, b.owners = pgx.Batch{}, nil
	br := b.Tx.SendBatch(ctx, &batch)
	var first error
	for i := range n {
		if _, err := br.Exec(); err != nil && first == nil {
			first = &queuedError{event: owners[i], sql: batch.QueuedQueries[i].SQL, err: err}
		}
	}
	if err := br.Close(); err != nil && first == nil {
		first = err
	}
	return first
}

// queuedError is a queued write that failed, with the event that queued it.
type queuedError struct {
	event int
	sql   string
	err   error
}

func (e *queuedError) Error() string {
	return fmt.Sprintf("queued write failed: %v (statement: %.120s)", e.err, e.sql)
}

func (e *queuedError) Unwrap() error { return e.err }

// queuedOwner returns the index of the event whose queued write failed with err.
func queuedOwner(err error) (int, bool) {
	var q *queuedError
	if errors.As(err, &q) {
		return q.event, true
	}
	return 0, false
}

// Everything but a queued Exec sends the queue first.

func (b *batchTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := b.flush(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return b.Tx.Exec(ctx, sql, args...)
}

func (b *batchTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := b.flush(ctx); err != nil {
		return nil, err
	}
	return b.Tx.Query(ctx, sql, args...)
}

func (b *batchTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := b.flush(ctx); err != nil {
		return errRow{err}
	}
	return b.Tx.QueryRow(ctx, sql, args...)
}

func (b *batchTx) SendBatch(ctx context.Context, batch *pgx.Batch) pgx.BatchResults {
	if err := b.flush(ctx); err != nil {
		return errBatchResults{b, err}
	}
	return b.Tx.SendBatch(ctx, batch)
}

func (b *batchTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := b.flush(ctx); err != nil {
		return 0, err
	}
	return b.Tx.CopyFrom(ctx, table, columns, src)
}

func (b *batchTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := b.flush(ctx); err != nil {
		return nil, err
	}
	return b.Tx.Prepare(ctx, name, sql)
}

func (b *batchTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := b.flush(ctx); err != nil {
		return nil, err
	}
	return b.Tx.Begin(ctx)
}

// Commit and Rollback are the runtime's: a handler must not end the batch.
func (b *batchTx) Commit(context.Context) error {
	return errors.New("projection: a handler must not commit the batch's transaction")
}

func (b *batchTx) Rollback(context.Context) error {
	return errors.New("projection: a handler must not roll back the batch's transaction; return an error instead")
}

// queued is the value [Queue] returns inside a batch.
type queued struct{ b *batchTx }

func (q queued) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	q.b.pending.Queue(sql, args...)
	q.b.owners = append(q.b.owners, q.b.event)
	return pgconn.CommandTag{}, nil
}

func (q queued) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return q.b.Query(ctx, sql, args...)
}

func (q queued) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return q.b.QueryRow(ctx, sql, args...)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

type errBatchResults struct {
	tx  pgx.Tx
	err error
}

func (r errBatchResults) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, r.err }
func (r errBatchResults) Query() (pgx.Rows, error)         { return nil, r.err }
func (r errBatchResults) QueryRow() pgx.Row                { return errRow{r.err} }
func (r errBatchResults) Close() error                     { return r.err }
func (r errBatchResults) Tx() pgx.Tx                       { return r.tx }
