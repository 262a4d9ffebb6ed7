// Package audit holds the handlers of the audit projection.
//
// esgen generate wrote this file once and never overwrites it: it is yours. When the
// projection handles a new event, generate appends a stub for it at the end.
package audit

import (
	"context"
	"errors"

	"example.com/app/internal/gen/events"
	auditgen "example.com/app/internal/gen/projections/audit"
	"github.com/esgen-dev/esgen/eventstore"
	"github.com/jackc/pgx/v5"
)

// Handlers implements auditgen.Handler. Each method runs inside the batch's
// transaction tx: write the read model through tx so it commits with the checkpoint.
type Handlers struct{}

var _ auditgen.Handler = (*Handlers)(nil)

// OnCustomerDeleted handles CustomerDeleted events.
func (h *Handlers) OnCustomerDeleted(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.CustomerDeleted) error {
	return errors.New("audit: OnCustomerDeleted not implemented")
}

// OnCustomerRegistered handles CustomerRegistered events.
func (h *Handlers) OnCustomerRegistered(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.CustomerRegistered) error {
	return errors.New("audit: OnCustomerRegistered not implemented")
}
