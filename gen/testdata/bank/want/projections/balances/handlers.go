// Package balances holds the handlers of the balances projection.
//
// esgen generate wrote this file once and never overwrites it: it is yours. When the
// projection handles a new event, generate appends a stub for it at the end.
package balances

import (
	"context"
	"errors"

	"example.com/app/generated/events"
	balancesgen "example.com/app/generated/projections/balances"
	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projection"
	"github.com/esgen-dev/esgen/projector"
	"github.com/jackc/pgx/v5"
)

// Handlers implements balancesgen.Handler. Each method runs inside the batch's
// transaction tx: write the read model (its tables are in
// sql/migrations/100_balances.sql) through it, so it commits with the
// checkpoint. Queue the writes whose result the handler does not read
// (RowsAffected, returned rows) with projection.Queue(tx): the batch then sends
// them in one round trip.
type Handlers struct{}

var _ balancesgen.Handler = (*Handlers)(nil)

// NewHandlers returns the handlers of a projector process: its generated main
// (cmd/balances-projector) calls it once, before the first batch. Give Handlers
// the fields they need and fill them in here, from deps (the process's pool,
// logger and partitions) or your own configuration; an error stops the process.
func NewHandlers(ctx context.Context, deps projector.Deps) (*Handlers, error) {
	return &Handlers{}, nil
}

// Reset clears the read model when the projection is rebuilt (esgen rebuild).
// It runs in the transaction that puts the checkpoints back at the start of the
// stream, before the first event is handled again: delete everything the
// handlers wrote, e.g.
//
//	_, err := tx.Exec(ctx, `TRUNCATE balances`)
//	return err
func (h *Handlers) Reset(ctx context.Context, tx pgx.Tx) error {
	return errors.New("balances: Reset not implemented")
}

// OnAccountOpened handles AccountOpened events.
func (h *Handlers) OnAccountOpened(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.AccountOpened) error {
	// Write through q what needs no result: the batch sends its queued writes
	// in one round trip. Use tx for RowsAffected or to read what a write returns.
	q := projection.Queue(tx)
	_ = q // e.g. q.Exec(ctx, `INSERT INTO balances ...`, env.AggregateID, env.AggregateVersion)
	return errors.New("balances: OnAccountOpened not implemented")
}

// OnMoneyDeposited handles MoneyDeposited events.
func (h *Handlers) OnMoneyDeposited(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.MoneyDeposited) error {
	// Write through q what needs no result: the batch sends its queued writes
	// in one round trip. Use tx for RowsAffected or to read what a write returns.
	q := projection.Queue(tx)
	_ = q // e.g. q.Exec(ctx, `INSERT INTO balances ...`, env.AggregateID, env.AggregateVersion)
	return errors.New("balances: OnMoneyDeposited not implemented")
}

// OnMoneyWithdrawn handles MoneyWithdrawn events.
func (h *Handlers) OnMoneyWithdrawn(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.MoneyWithdrawn) error {
	// Write through q what needs no result: the batch sends its queued writes
	// in one round trip. Use tx for RowsAffected or to read what a write returns.
	q := projection.Queue(tx)
	_ = q // e.g. q.Exec(ctx, `INSERT INTO balances ...`, env.AggregateID, env.AggregateVersion)
	return errors.New("balances: OnMoneyWithdrawn not implemented")
}
