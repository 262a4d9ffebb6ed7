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
	var q pgx.Batch
	q.Queue(readsql.PinPlan)
	q.Queue(st.SQL, st.Args...)
	q.Queue(readsql.UnpinPlan)
	br := tx.SendBatch(ctx, &q)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return eventstore.Batch{}, err
	}
	rows, err := br.Query()
	if err != nil {
		return eventstore.Batch{}, err
	}
	b, err := eventstore.ScanBatch(rows, from, limit)
	if err != nil {
		return eventstore.Batch{}, err
	}
	if _, err := br.Exec(); err != nil {
		return eventstore.Batch{}, err
	}
	return b, br.Close()
}
