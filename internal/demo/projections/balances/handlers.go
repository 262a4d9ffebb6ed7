// Package balances holds the handlers of the balances projection.
//
// esgen generate wrote this file once and never overwrites it: it is yours. When the
// projection handles a new event, generate appends a stub for it at the end.
package balances

import (
	"context"
	"fmt"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/demo/generated/events"
	balancesgen "github.com/esgen-dev/esgen/internal/demo/generated/projections/balances"
	"github.com/esgen-dev/esgen/projection"
	"github.com/esgen-dev/esgen/projector"
	"github.com/jackc/pgx/v5"
)

// Handlers implements balancesgen.Handler. Each method runs inside the batch's
// transaction tx: write the read model through tx so it commits with the checkpoint.
// These handlers read no result of their writes, so they queue them with
// projection.Queue(tx): the batch sends them all in one round trip. A queued write
// that fails (a duplicate, an event out of order) fails the event that queued it.
type Handlers struct {
	// PartitionKey is the partition of the worker process, recorded with every handled
	// event so that the demo can check the routing.
	PartitionKey int
}

// NewHandlers builds the handlers of a projector process from what it runs: the demo
// starts one process per partition, and its handlers record that partition.
func NewHandlers(ctx context.Context, deps projector.Deps) (*Handlers, error) {
	if len(deps.Partitions) != 1 {
		return nil, fmt.Errorf("the demo's handlers record the partition of their process: run one partition per process, not %v", deps.Partitions)
	}
	deps.Logger.Info("demo handlers ready", "partition", deps.Partitions[0])
	return &Handlers{PartitionKey: deps.Partitions[0]}, nil
}

// record notes the event as handled by this partition; a second handling of the same
// event would violate the primary key and fail the batch.
func (h *Handlers) record(ctx context.Context, tx pgx.Tx, env *eventstore.Event) error {
	_, err := projection.Queue(tx).Exec(ctx, `INSERT INTO demo_handled_events (event_id, account_id, version, partition_key) VALUES ($1, $2, $3, $4)`,
		env.EventID, env.AggregateID, env.AggregateVersion, h.PartitionKey)
	if err != nil {
		return fmt.Errorf("record event %s: %w", env.EventID, err)
	}
	return nil
}

// apply adds delta to the account's balance, checking that events arrive in version
// order: for any other version the new one is NULL, which the column refuses.
func (h *Handlers) apply(ctx context.Context, tx pgx.Tx, env *eventstore.Event, delta int64) error {
	_, err := projection.Queue(tx).Exec(ctx, `UPDATE demo_balances SET balance = balance + $2,
		version = CASE WHEN version = $3 - 1 THEN $3 END
		WHERE account_id = $1`, env.AggregateID, delta, env.AggregateVersion)
	if err != nil {
		return fmt.Errorf("update balance of %s: %w", env.AggregateID, err)
	}
	return h.record(ctx, tx, env)
}

var _ balancesgen.Handler = (*Handlers)(nil)

// OnAccountOpened handles AccountOpened events.
func (h *Handlers) OnAccountOpened(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.AccountOpened) error {
	_, err := projection.Queue(tx).Exec(ctx, `INSERT INTO demo_balances (account_id, owner, currency, balance, version, partition_key)
		VALUES ($1, $2, $3, 0, $4, $5)`, env.AggregateID, e.Owner, e.Currency, env.AggregateVersion, h.PartitionKey)
	if err != nil {
		return fmt.Errorf("open %s: %w", env.AggregateID, err)
	}
	return h.record(ctx, tx, env)
}

// OnMoneyDeposited handles MoneyDeposited events.
func (h *Handlers) OnMoneyDeposited(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.MoneyDeposited) error {
	return h.apply(ctx, tx, env, e.Amount)
}

// OnMoneyWithdrawn handles MoneyWithdrawn events.
func (h *Handlers) OnMoneyWithdrawn(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.MoneyWithdrawn) error {
	return h.apply(ctx, tx, env, -e.Amount)
}

// Reset clears the read model when the projection is rebuilt (esgen rebuild). It
// runs in the transaction that puts the checkpoints back at the start of the stream,
// before the first event is handled again.
func (h *Handlers) Reset(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `TRUNCATE demo_balances, demo_handled_events`)
	return err
}
