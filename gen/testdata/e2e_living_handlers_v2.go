// The orders handlers after the spec changed: OrderPlaced is at version 2 (buyer_id,
// currency), and OrderShipped is handled too. TestEndToEndLivingSpec writes this file
// as projections/orders/handlers.go, and with "orders" replaced as
// projections/shipping/handlers.go.

package orders

import (
	"context"
	"fmt"

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

// OnOrderPlaced inserts the order; a version-1 event arrives upcast, with its
// customer as the buyer.
func (h *Handlers) OnOrderPlaced(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.OrderPlaced) error {
	_, err := tx.Exec(ctx, `INSERT INTO orders (order_id, buyer, amount, currency) VALUES ($1, $2, $3, $4)`,
		env.AggregateID, e.BuyerID, e.Amount, e.Currency)
	return err
}

// OnOrderShipped records the carrier of a placed order.
func (h *Handlers) OnOrderShipped(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.OrderShipped) error {
	tag, err := tx.Exec(ctx, `UPDATE orders SET carrier = $2 WHERE order_id = $1`, env.AggregateID, e.Carrier)
	if err == nil && tag.RowsAffected() != 1 {
		err = fmt.Errorf("order %s shipped before it was placed", env.AggregateID)
	}
	return err
}
