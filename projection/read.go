package projection

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/readsql"
)

// read reads up to limit events of the partition after cursor from (step 1 of a
// batch): the statement is readsql.ReadPartition (through the partition index when it
// exists), the rows are decoded by eventstore.ScanBatch. With head, the read also
// returns the head of the stream, for an idle partition's checkpoint to follow. The
// read runs with its generic plan, pinned (readsql.PinPlan).
func (w *worker) read(ctx context.Context, tx pgx.Tx, from eventstore.Cursor, limit int, skipRetired, head bool) (eventstore.Batch, error) {
	txs, positions := from.HoleArrays()
	st := readsql.ReadPartition(readsql.PartitionRead{
		Filter: readsql.Filter{
			AfterTransactionID: from.TransactionID, AfterPosition: from.GlobalPosition,
			TotalPartitions: w.total, PartitionKey: w.key, EventTypes: w.p.EventTypes,
		},
		Holes: readsql.Holes{TransactionIDs: txs, Positions: positions},
		Limit: limit, Projection: w.p.Name, SkipRetired: skipRetired, Literal: w.indexed, Head: head,
	})
	var b eventstore.Batch
	err := pinned(ctx, tx, st, func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		b, err = eventstore.ScanBatch(rows, from, limit)
		return err
	})
	return b, err
}

// pinned runs st between readsql.PinPlan and readsql.UnpinPlan, the three in one round
// trip; results reads st's results.
func pinned(ctx context.Context, tx pgx.Tx, st readsql.Statement, results func(pgx.BatchResults) error) error {
	var q pgx.Batch
	q.Queue(readsql.PinPlan)
	q.Queue(st.SQL, st.Args...)
	q.Queue(readsql.UnpinPlan)
	br := tx.SendBatch(ctx, &q)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return err
	}
	if err := results(br); err != nil {
		return err
	}
	if _, err := br.Exec(); err != nil {
		return err
	}
	return br.Close()
}
