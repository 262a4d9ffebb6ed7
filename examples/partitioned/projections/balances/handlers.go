// Package balances holds the handlers of the balances projection.
//
// esgen generate wrote this file once and never overwrites it: it is yours. When the
// projection handles a new event, generate appends a stub for it at the end.
package balances

import (
	"context"
	"fmt"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/examples/partitioned/generated/events"
	balancesgen "github.com/esgen-dev/esgen/examples/partitioned/generated/projections/balances"
	"github.com/esgen-dev/esgen/projection"
	"github.com/jackc/pgx/v5"
)

// Handlers implements balancesgen.Handler. Each method runs inside the batch's
// transaction tx: write the read model through tx so it commits with the checkpoint.
// These handlers read no result of their writes, so they queue them with
// projection.Queue(tx): the batch sends them all in one round trip.
type Handlers struct{}

var _ balancesgen.Handler = (*Handlers)(nil)

// OnAccountOpened handles AccountOpened events.
func (h *Handlers) OnAccountOpened(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.AccountOpened) error {
	part, _ := projection.CurrentPartition(ctx)
	_, err := projection.Queue(tx).Exec(ctx, `INSERT INTO balances (account_id, owner, balance, version, partition_key) VALUES ($1, $2, 0, $3, $4)`,
		env.AggregateID, e.Owner, env.AggregateVersion, part.Key)
	if err != nil {
		return fmt.Errorf("open account %s: %w", env.AggregateID, err)
	}
	return record(ctx, tx, env)
}

// OnMoneyDeposited handles MoneyDeposited events.
func (h *Handlers) OnMoneyDeposited(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.MoneyDeposited) error {
	return apply(ctx, tx, env, e.Amount)
}

// OnMoneyWithdrawn handles MoneyWithdrawn events.
func (h *Handlers) OnMoneyWithdrawn(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.MoneyWithdrawn) error {
	return apply(ctx, tx, env, -e.Amount)
}

// apply adds delta to the account's balance. The version check turns an event
// applied twice, or out of order, into an error instead of a wrong balance: the new
// version is then NULL, which the column refuses.
func apply(ctx context.Context, tx pgx.Tx, env *eventstore.Event, delta int64) error {
	_, err := projection.Queue(tx).Exec(ctx, `UPDATE balances SET balance = balance + $2,
		version = CASE WHEN version = $3 - 1 THEN $3 END
		WHERE account_id = $1`, env.AggregateID, delta, env.AggregateVersion)
	if err != nil {
		return fmt.Errorf("update account %s: %w", env.AggregateID, err)
	}
	return record(ctx, tx, env)
}

// record notes which partition handled the event.
func record(ctx context.Context, tx pgx.Tx, env *eventstore.Event) error {
	part, _ := projection.CurrentPartition(ctx)
	_, err := projection.Queue(tx).Exec(ctx, `INSERT INTO handled_events (event_id, account_id, version, partition_key, total_partitions)
		VALUES ($1, $2, $3, $4, $5)`, env.EventID, env.AggregateID, env.AggregateVersion, part.Key, part.Total)
	if err != nil {
		return fmt.Errorf("record event %s: %w", env.EventID, err)
	}
	return nil
}

// Reset clears the read model when the projection is rebuilt (esgen rebuild). It
// runs in the transaction that puts the checkpoints back at the start of the stream,
// before the first event is handled again.
func (h *Handlers) Reset(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `TRUNCATE balances, handled_events`)
	return err
}
