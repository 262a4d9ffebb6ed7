// The orders handlers before the spec changes. TestEndToEndLivingSpec writes this
// file as projections/orders/handlers.go, and with "orders" replaced as
// projections/shipping/handlers.go.

package orders

import (
	"context"

	"example.com/shop/generated/events"
	ordersgen "example.com/shop/generated/projections/orders"
	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projector"
	"github.com/jackc/pgx/v5"
)

// Handlers write the orders table.
type Handlers struct{}

var _ ordersgen.Handler = (*Handlers)(nil)

// NewHandlers needs nothing.
func NewHandlers(ctx context.Context, deps projector.Deps) (*Handlers, error) {
	return &Handlers{}, nil
}

// Reset empties the table for a rebuild.
func (h *Handlers) Reset(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `TRUNCATE orders`)
	return err
}

// OnOrderPlaced inserts the order.
func (h *Handlers) OnOrderPlaced(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.OrderPlaced) error {
	_, err := tx.Exec(ctx, `INSERT INTO orders (order_id, buyer, amount) VALUES ($1, $2, $3)`, env.AggregateID, e.CustomerID, e.Amount)
	return err
}
