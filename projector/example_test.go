package projector_test

import (
	"context"
	"log/slog"

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

// counts is a handler with a dependency: the logger of its process.
type counts struct{ log *slog.Logger }

func (c *counts) Handle(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
	c.log.Debug("counted", "aggregate", ev.AggregateID)
	_, err := tx.Exec(ctx, `INSERT INTO counts (aggregate_id, n) VALUES ($1, 1)
		ON CONFLICT (aggregate_id) DO UPDATE SET n = counts.n + 1`, ev.AggregateID)
	return err
}

// A projector binary whose handler is built with the process's dependencies, as the
// generated mains do with the handler package's NewHandlers.
func ExampleMainWith() {
	newProjection := func(h *counts) projection.Projection {
		return projection.Projection{Name: "counts", Partitioned: true, Handler: h}
	}
	projector.MainWith(newProjection, func(ctx context.Context, deps projector.Deps) (*counts, error) {
		return &counts{log: deps.Logger.With("partitions", deps.Partitions)}, nil
	})
}
