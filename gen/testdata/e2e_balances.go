// The read-model writes of the balances handlers. TestEndToEnd copies this file next
// to the generated handlers.go (as readmodel.go) and fills in the stubs with calls
// to open and apply.

package balances

import (
	"context"
	"errors"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/jackc/pgx/v5"
)

// open inserts the account at its first version.
func open(ctx context.Context, tx pgx.Tx, env *eventstore.Event, owner, currency string) error {
	_, err := tx.Exec(ctx, `INSERT INTO balances (account_id, owner, currency, balance, events, version)
		VALUES ($1, $2, $3, 0, 1, $4)`, env.AggregateID, owner, currency, env.AggregateVersion)
	return err
}

// apply adds delta to the account's balance. It checks that events arrive in
// aggregate order, each exactly once.
func apply(ctx context.Context, tx pgx.Tx, env *eventstore.Event, delta int64) error {
	tag, err := tx.Exec(ctx, `UPDATE balances SET balance = balance + $2, events = events + 1, version = $3
		WHERE account_id = $1 AND version = $3 - 1`, env.AggregateID, delta, env.AggregateVersion)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return errors.New("event out of order or seen twice")
	}
	return nil
}
