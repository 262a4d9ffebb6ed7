// Package balances holds the handlers of the balances projection.
//
// esgen generate wrote this file once and never overwrites it: it is yours. When the
// projection handles a new event, generate appends a stub for it at the end.
package balances

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/examples/basic/generated/events"
	balancesgen "github.com/esgen-dev/esgen/examples/basic/generated/projections/balances"
	"github.com/esgen-dev/esgen/examples/basic/generated/readmodel"
	"github.com/esgen-dev/esgen/projection"
	"github.com/esgen-dev/esgen/projector"
	"github.com/jackc/pgx/v5"
)

// Handlers implements balancesgen.Handler. Each method runs inside the batch's
// transaction tx and writes the read model through it, with the typed queries sqlc
// generates from sql/queries/balances.sql, so each change commits together with the
// projection's checkpoint. The handlers read no result of their writes, so they queue
// them with projection.Queue(tx): the batch sends them all in one round trip. (A
// handler that reads RowsAffected, or rows a write returns, runs that query on tx.)
type Handlers struct {
	log *slog.Logger
}

var _ balancesgen.Handler = (*Handlers)(nil)

// NewHandlers returns the handlers of a projector process; cmd/balances-projector
// calls it once, before the first batch, with the process's dependencies. These
// handlers keep its logger.
func NewHandlers(ctx context.Context, deps projector.Deps) (*Handlers, error) {
	return &Handlers{log: deps.Logger.With("partitions", deps.Partitions)}, nil
}

// OnAccountOpened handles AccountOpened events.
func (h *Handlers) OnAccountOpened(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.AccountOpened) error {
	err := readmodel.New(projection.Queue(tx)).OpenAccount(ctx, readmodel.OpenAccountParams{
		AccountID: env.AggregateID,
		Owner:     e.Owner,
		Version:   env.AggregateVersion,
	})
	if err != nil {
		return fmt.Errorf("open account %s: %w", env.AggregateID, err)
	}
	h.log.Info("account opened", "account", env.AggregateID, "owner", e.Owner)
	return nil
}

// OnMoneyDeposited handles MoneyDeposited events.
func (h *Handlers) OnMoneyDeposited(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.MoneyDeposited) error {
	return apply(ctx, tx, env, e.Amount)
}

// OnMoneyWithdrawn handles MoneyWithdrawn events.
func (h *Handlers) OnMoneyWithdrawn(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.MoneyWithdrawn) error {
	return apply(ctx, tx, env, -e.Amount)
}

// apply adds delta to the account's balance. The query's version check turns an event
// applied twice, or out of order, into an error instead of a wrong balance.
func apply(ctx context.Context, tx pgx.Tx, env *eventstore.Event, delta int64) error {
	err := readmodel.New(projection.Queue(tx)).ApplyToBalance(ctx, readmodel.ApplyToBalanceParams{
		Delta:     delta,
		Version:   env.AggregateVersion,
		AccountID: env.AggregateID,
	})
	if err != nil {
		return fmt.Errorf("update account %s: %w", env.AggregateID, err)
	}
	return nil
}

// Reset clears the read model when the projection is rebuilt (esgen rebuild). It
// runs in the transaction that puts the checkpoints back at the start of the stream,
// before the first event is handled again.
func (h *Handlers) Reset(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `TRUNCATE balances`)
	return err
}
