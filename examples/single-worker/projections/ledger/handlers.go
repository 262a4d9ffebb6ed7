// Package ledger holds the handlers of the ledger projection.
//
// esgen generate wrote this file once and never overwrites it: it is yours. When the
// projection handles a new event, generate appends a stub for it at the end.
package ledger

import (
	"context"
	"fmt"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/examples/single-worker/generated/events"
	ledgergen "github.com/esgen-dev/esgen/examples/single-worker/generated/projections/ledger"
	"github.com/esgen-dev/esgen/projection"
	"github.com/jackc/pgx/v5"
)

// Handlers implements ledgergen.Handler. Each method runs inside the batch's
// transaction tx: write the read model through tx so it commits with the checkpoint.
// The handlers read no result of their writes, so they queue them with
// projection.Queue(tx): the batch sends them all in one round trip, in order, each
// line seeing the one before.
//
// The ledger numbers every event of every account and keeps a bank-wide running
// total. That needs one reader of the whole stream in order, hence
// `partitioned: false` in esgen.yaml: partitions would each see only their accounts.
type Handlers struct{}

var _ ledgergen.Handler = (*Handlers)(nil)

// OnAccountOpened handles AccountOpened events.
func (h *Handlers) OnAccountOpened(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.AccountOpened) error {
	return addLine(ctx, tx, env, "opened", 0)
}

// OnMoneyDeposited handles MoneyDeposited events.
func (h *Handlers) OnMoneyDeposited(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.MoneyDeposited) error {
	return addLine(ctx, tx, env, "deposit", e.Amount)
}

// OnMoneyWithdrawn handles MoneyWithdrawn events.
func (h *Handlers) OnMoneyWithdrawn(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.MoneyWithdrawn) error {
	return addLine(ctx, tx, env, "withdrawal", -e.Amount)
}

// addLine appends the event to the ledger as its next line, with the new bank total.
func addLine(ctx context.Context, tx pgx.Tx, env *eventstore.Event, kind string, amount int64) error {
	_, err := projection.Queue(tx).Exec(ctx, `
		INSERT INTO ledger_entries (line, event_id, account_id, kind, amount, bank_total)
		SELECT coalesce(max(line), 0) + 1, $1, $2, $3, $4,
		       coalesce((SELECT bank_total FROM ledger_entries ORDER BY line DESC LIMIT 1), 0) + $4
		FROM ledger_entries`,
		env.EventID, env.AggregateID, kind, amount)
	if err != nil {
		return fmt.Errorf("ledger line for event %s: %w", env.EventID, err)
	}
	return nil
}

// Reset clears the read model when the projection is rebuilt (esgen rebuild). It
// runs in the transaction that puts the checkpoints back at the start of the stream,
// before the first event is handled again.
func (h *Handlers) Reset(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `TRUNCATE ledger_entries`)
	return err
}
