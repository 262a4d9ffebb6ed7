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
	"github.com/esgen-dev/esgen/projection"
	"github.com/esgen-dev/esgen/projector"
	"github.com/jackc/pgx/v5"
)

// Handlers implements auditgen.Handler. Each method runs inside the batch's
// transaction tx: write the read model (its tables are in
// db/migrations/101_audit.sql) through it, so it commits with the checkpoint.
// Queue the writes whose result the handler does not read (RowsAffected,
// returned rows) with projection.Queue(tx): the batch then sends them in one
// round trip. The typed queries sqlc generates from sql/queries/audit.sql run
// on both, e.g.
//
//	readmodel.New(projection.Queue(tx)).SaveAudit(ctx, readmodel.SaveAuditParams{AggregateID: env.AggregateID, Version: env.AggregateVersion})
type Handlers struct{}

var _ auditgen.Handler = (*Handlers)(nil)

// NewHandlers returns the handlers of a projector process: its generated main
// (bin/audit-projector) calls it once, before the first batch. Give Handlers
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
//	_, err := tx.Exec(ctx, `TRUNCATE audit`)
//	return err
func (h *Handlers) Reset(ctx context.Context, tx pgx.Tx) error {
	return errors.New("audit: Reset not implemented")
}

// OnCustomerDeleted handles CustomerDeleted events.
func (h *Handlers) OnCustomerDeleted(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.CustomerDeleted) error {
	// Write through q what needs no result: the batch sends its queued writes
	// in one round trip. Use tx for RowsAffected or to read what a write returns.
	q := projection.Queue(tx)
	_ = q // e.g. readmodel.New(q).SaveAudit(ctx, readmodel.SaveAuditParams{...})
	return errors.New("audit: OnCustomerDeleted not implemented")
}

// OnCustomerRegistered handles CustomerRegistered events.
func (h *Handlers) OnCustomerRegistered(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.CustomerRegistered) error {
	// Write through q what needs no result: the batch sends its queued writes
	// in one round trip. Use tx for RowsAffected or to read what a write returns.
	q := projection.Queue(tx)
	_ = q // e.g. readmodel.New(q).SaveAudit(ctx, readmodel.SaveAuditParams{...})
	return errors.New("audit: OnCustomerRegistered not implemented")
}
