// The read-model side of the balances handlers. TestEndToEnd copies this file next to
// the generated handlers.go (as readmodel.go), makes Handlers embed readModel, builds
// it in NewHandlers, and fills in the stubs with calls to open and apply.

package balances

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"example.com/bank/generated/readmodel"
	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projector"
	"github.com/jackc/pgx/v5"
)

// readModel holds what the handlers depend on: the owner prefix of this deployment,
// from the environment, and the process's logger.
type readModel struct {
	ownerPrefix string
	log         *slog.Logger
}

// newReadModel builds the handlers' dependencies from the process's. The read
// model's table must exist already: esgen migrate created it.
func newReadModel(ctx context.Context, deps projector.Deps) (readModel, error) {
	var accounts int64
	if err := deps.Pool.QueryRow(ctx, `SELECT count(*) FROM balances`).Scan(&accounts); err != nil {
		return readModel{}, fmt.Errorf("balances read model: %w", err)
	}
	deps.Logger.Info("balances handlers ready", "accounts", accounts, "partitions", fmt.Sprint(deps.Partitions))
	return readModel{ownerPrefix: os.Getenv("OWNER_PREFIX"), log: deps.Logger}, nil
}

// open inserts the account at its first version, through the sqlc query run on db:
// the handler's projection.Queue(tx), so the insert is sent with the batch.
func (m readModel) open(ctx context.Context, db readmodel.DBTX, env *eventstore.Event, owner, currency string) error {
	return readmodel.New(db).OpenAccount(ctx, readmodel.OpenAccountParams{
		AccountID: env.AggregateID,
		Owner:     m.ownerPrefix + owner,
		Currency:  currency,
		Version:   env.AggregateVersion,
	})
}

// apply adds delta to the account's balance. It checks that events arrive in
// aggregate order, each exactly once: it reads RowsAffected, so it runs on tx.
func (m readModel) apply(ctx context.Context, tx pgx.Tx, env *eventstore.Event, delta int64) error {
	n, err := readmodel.New(tx).ApplyToBalance(ctx, readmodel.ApplyToBalanceParams{
		Delta:     delta,
		Version:   env.AggregateVersion,
		AccountID: env.AggregateID,
	})
	if err != nil {
		return err
	}
	if n != 1 {
		m.log.Error("event out of order or seen twice", "account", env.AggregateID, "version", env.AggregateVersion)
		return errors.New("event out of order or seen twice")
	}
	return nil
}
