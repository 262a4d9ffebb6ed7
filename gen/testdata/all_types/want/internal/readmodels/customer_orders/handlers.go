// Package customer_orders holds the handlers of the customer_orders projection.
//
// esgen generate wrote this file once and never overwrites it: it is yours. When the
// projection handles a new event, generate appends a stub for it at the end.
package customer_orders

import (
	"context"
	"errors"

	"example.com/app/internal/gen/events"
	customer_ordersgen "example.com/app/internal/gen/projections/customer_orders"
	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projection"
	"github.com/esgen-dev/esgen/projector"
	"github.com/jackc/pgx/v5"
)

// Handlers implements customer_ordersgen.Handler. Each method runs inside the
// batch's transaction tx: write the read model (its tables are in
// db/migrations/100_customer_orders.sql) through it, so it commits with the
// checkpoint. Queue the writes whose result the handler does not read
// (RowsAffected, returned rows) with projection.Queue(tx): the batch then sends
// them in one round trip. The typed queries sqlc generates from
// sql/queries/customer_orders.sql run on both, e.g.
//
//	readmodel.New(projection.Queue(tx)).SaveCustomerOrders(ctx, readmodel.SaveCustomerOrdersParams{AggregateID: env.AggregateID, Version: env.AggregateVersion})
type Handlers struct{}

var _ customer_ordersgen.Handler = (*Handlers)(nil)

// NewHandlers returns the handlers of a projector process: its generated main
// (bin/customer_orders-projector) calls it once, before the first batch. Give
// Handlers the fields they need and fill them in here, from deps (the process's
// pool, logger and partitions) or your own configuration; an error stops the
// process.
func NewHandlers(ctx context.Context, deps projector.Deps) (*Handlers, error) {
	return &Handlers{}, nil
}

// Reset clears the read model when the projection is rebuilt (esgen rebuild).
// It runs in the transaction that puts the checkpoints back at the start of the
// stream, before the first event is handled again: delete everything the
// handlers wrote, e.g.
//
//	_, err := tx.Exec(ctx, `TRUNCATE customer_orders`)
//	return err
func (h *Handlers) Reset(ctx context.Context, tx pgx.Tx) error {
	return errors.New("customer_orders: Reset not implemented")
}

// OnCustomerRegistered handles CustomerRegistered events.
func (h *Handlers) OnCustomerRegistered(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.CustomerRegistered) error {
	// Write through q what needs no result: the batch sends its queued writes
	// in one round trip. Use tx for RowsAffected or to read what a write returns.
	q := projection.Queue(tx)
	_ = q // e.g. readmodel.New(q).SaveCustomerOrders(ctx, readmodel.SaveCustomerOrdersParams{...})
	return errors.New("customer_orders: OnCustomerRegistered not implemented")
}

// OnOrderPlaced handles OrderPlaced events.
func (h *Handlers) OnOrderPlaced(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.OrderPlaced) error {
	// Write through q what needs no result: the batch sends its queued writes
	// in one round trip. Use tx for RowsAffected or to read what a write returns.
	q := projection.Queue(tx)
	_ = q // e.g. readmodel.New(q).SaveCustomerOrders(ctx, readmodel.SaveCustomerOrdersParams{...})
	return errors.New("customer_orders: OnOrderPlaced not implemented")
}

// OnOrderShipped handles OrderShipped events.
func (h *Handlers) OnOrderShipped(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.OrderShipped) error {
	// Write through q what needs no result: the batch sends its queued writes
	// in one round trip. Use tx for RowsAffected or to read what a write returns.
	q := projection.Queue(tx)
	_ = q // e.g. readmodel.New(q).SaveCustomerOrders(ctx, readmodel.SaveCustomerOrdersParams{...})
	return errors.New("customer_orders: OnOrderShipped not implemented")
}
