package projection

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/readsql"
)

// read reads up to limit events of the partition after from (step 1 of a batch): the
// statement is readsql.ReadPartition (with the partition count and key written into
// it when an index on partition_hash % count exists), the rows are decoded by
// eventstore.ScanEvents into one slice per batch.
func (w *worker) read(ctx context.Context, tx pgx.Tx, from eventstore.Position, limit int, skipRetired bool) ([]eventstore.Event, error) {
	st := readsql.ReadPartition(readsql.PartitionRead{
		Filter: readsql.Filter{
			AfterTransactionID: from.TransactionID, AfterPosition: from.GlobalPosition,
			TotalPartitions: w.total, PartitionKey: w.key, EventTypes: w.p.EventTypes,
		},
		Limit: limit, Projection: w.p.Name, SkipRetired: skipRetired, Literal: w.indexed,
	})
	rows, err := tx.Query(ctx, st.SQL, st.Args...)
	if err != nil {
		return nil, err
	}
	events, err := eventstore.ScanEvents(rows, make([]eventstore.Event, 0, limit))
	if err != nil {
		return nil, err
	}
	return events, nil
}
