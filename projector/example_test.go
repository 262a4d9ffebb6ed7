package projector_test

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projection"
	"github.com/esgen-dev/esgen/projector"
)

// A projector binary: the whole main. Run copies with PARTITION_KEY=0..3
// TOTAL_PARTITIONS=4 and DATABASE_URL set.
func ExampleMain() {
	projector.Main(projection.Projection{
		Name:        "balances",
		EventTypes:  []string{"Deposited", "Withdrawn"},
		Partitioned: true,
		Handler: projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
			// Writes through tx commit together with the checkpoint.
			_, err := tx.Exec(ctx, `INSERT INTO balances (account, events) VALUES ($1, 1)
				ON CONFLICT (account) DO UPDATE SET events = balances.events + 1`, ev.AggregateID)
			return err
		}),
	})
}
