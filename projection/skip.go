package projection

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/generated/dbsqlc"
)

// SkipRequest asks a projection to pass one event without handling it: what esgen skip
// records.
type SkipRequest struct {
	Projection string
	EventID    uuid.UUID
	// Reason says why (required); By names the operator (required).
	Reason string
	By     string
}

// SkippedEvent is an event skipped on purpose, as recorded in esgen_skipped_events.
type SkippedEvent struct {
	Projection   string    `json:"projection"`
	EventID      uuid.UUID `json:"event_id"`
	Reason       string    `json:"reason"`
	SkippedBy    string    `json:"skipped_by"`
	DatabaseUser string    `json:"database_user"`
	SkippedAt    time.Time `json:"skipped_at"`
	// The event (zero when it is not in the store).
	Position      eventstore.Position `json:"position"`
	EventType     string              `json:"event_type,omitempty"`
	AggregateType string              `json:"aggregate_type,omitempty"`
	AggregateID   string              `json:"aggregate_id,omitempty"`
	// When and in which partition (key of count) a worker passed it; zero until then.
	PassedAt        time.Time `json:"passed_at"`
	PassedPartition int       `json:"passed_partition"`
	PassedCount     int       `json:"passed_count"`
}

// Passed reports whether a worker has passed the event.
func (s SkippedEvent) Passed() bool { return !s.PassedAt.IsZero() }

// ErrEventNotFound is returned by [Skip] for an event id that is not in the store.
var ErrEventNotFound = errors.New("event not found")

// Skip records that projection req.Projection passes event req.EventID without calling
// its handler: the way out of a poison event that a fix of the handler cannot handle.
// The partition that stopped before the event (or retries it) goes on at its next
// retry; a worker that has not reached the event passes it when it does (running
// workers read the list of skipped events when a handler fails and every few seconds).
// The record keeps who, when and why, and the batch that passes the event records when
// and where. It returns [ErrNotFound] for an unknown projection, [ErrEventNotFound]
// for an unknown event, and an error for an event the projection does not handle or
// has handled already, or that is recorded already.
func Skip(ctx context.Context, db DBTX, req SkipRequest) (SkippedEvent, error) {
	req.Reason, req.By = strings.TrimSpace(req.Reason), strings.TrimSpace(req.By)
	switch {
	case req.Projection == "":
		return SkippedEvent{}, errors.New("projection: skip: empty projection name")
	case req.Reason == "":
		return SkippedEvent{}, errors.New("projection: skip: a reason is required")
	case req.By == "":
		return SkippedEvent{}, errors.New("projection: skip: who skips is required")
	}
	proj, err := queries.GetProjection(ctx, db, req.Projection)
	if errors.Is(err, pgx.ErrNoRows) {
		return SkippedEvent{}, fmt.Errorf("projection %s: %w", req.Projection, ErrNotFound)
	}
	if err != nil {
		return SkippedEvent{}, fmt.Errorf("projection %s: %w", req.Projection, eventstore.MissingTables(err))
	}
	ev, err := queries.GetEventPlace(ctx, db, pgUUID(req.EventID))
	if errors.Is(err, pgx.ErrNoRows) {
		return SkippedEvent{}, fmt.Errorf("event %s: %w", req.EventID, ErrEventNotFound)
	}
	if err != nil {
		return SkippedEvent{}, fmt.Errorf("event %s: %w", req.EventID, err)
	}
	if len(proj.EventTypes) > 0 && !slices.Contains(proj.EventTypes, ev.EventType) {
		return SkippedEvent{}, fmt.Errorf("projection %s does not handle events of type %s (event %s): nothing to skip", req.Projection, ev.EventType, req.EventID)
	}
	all, err := skipped(ctx, db, req.Projection)
	if err != nil {
		return SkippedEvent{}, err
	}
	for _, s := range all {
		if s.EventID == req.EventID {
			return s, fmt.Errorf("projection %s: event %s was skipped already, by %s at %s: %s",
				req.Projection, req.EventID, s.SkippedBy, s.SkippedAt.UTC().Format(time.RFC3339), s.Reason)
		}
	}
	pos := eventstore.Position{TransactionID: ev.TransactionID.Uint64, GlobalPosition: ev.GlobalPosition}
	key := int32(ev.PartitionHash % int64(proj.PartitionCount))
	cp, err := queries.GetCheckpoint(ctx, db, dbsqlc.GetCheckpointParams{Projection: req.Projection, Generation: proj.Generation, PartitionKey: key})
	if err == nil && cursorOf(cp).Handled(pos) {
		return SkippedEvent{}, fmt.Errorf("projection %s: partition %d/%d has handled event %s already (its checkpoint is %s, the event at %s): nothing to skip",
			req.Projection, key, proj.PartitionCount, req.EventID, cursorOf(cp).Position, pos)
	}
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return SkippedEvent{}, fmt.Errorf("projection %s: checkpoint of partition %d: %w", req.Projection, key, err)
	}
	n, err := queries.InsertSkippedEvent(ctx, db, dbsqlc.InsertSkippedEventParams{
		Projection: req.Projection, EventID: pgUUID(req.EventID), Reason: req.Reason, SkippedBy: req.By,
	})
	if err != nil {
		return SkippedEvent{}, fmt.Errorf("projection %s: record the skip: %w", req.Projection, eventstore.MissingTables(err))
	}
	all, err = skipped(ctx, db, req.Projection)
	if err != nil {
		return SkippedEvent{}, err
	}
	for _, s := range all {
		if s.EventID == req.EventID {
			if n == 0 {
				return s, fmt.Errorf("projection %s: event %s was skipped already, by %s at %s: %s",
					req.Projection, req.EventID, s.SkippedBy, s.SkippedAt.UTC().Format(time.RFC3339), s.Reason)
			}
			return s, nil
		}
	}
	return SkippedEvent{}, fmt.Errorf("projection %s: the skip of event %s is not recorded", req.Projection, req.EventID)
}

// Skipped returns the events skipped in a projection ("" for every projection), oldest
// skip first.
func Skipped(ctx context.Context, db DBTX, projection string) ([]SkippedEvent, error) {
	return skipped(ctx, db, projection)
}

func skipped(ctx context.Context, db DBTX, projection string) ([]SkippedEvent, error) {
	rows, err := queries.ListSkippedEvents(ctx, db, projection)
	if err != nil {
		return nil, fmt.Errorf("projection: list skipped events: %w", eventstore.MissingTables(err))
	}
	out := make([]SkippedEvent, len(rows))
	for i, r := range rows {
		out[i] = SkippedEvent{
			Projection: r.Projection, EventID: uuid.UUID(r.EventID.Bytes), Reason: r.Reason, SkippedBy: r.SkippedBy,
			DatabaseUser: r.DatabaseUser, SkippedAt: r.SkippedAt.Time,
			Position:  eventstore.Position{TransactionID: r.TransactionID.Uint64, GlobalPosition: r.GlobalPosition.Int64},
			EventType: r.EventType.String, AggregateType: r.AggregateType.String, AggregateID: r.AggregateID.String,
			PassedAt: r.PassedAt.Time, PassedPartition: int(r.PassedPartition.Int32), PassedCount: int(r.PassedCount.Int32),
		}
	}
	return out, nil
}

func pgUUID(id uuid.UUID) pgtype.UUID { return pgtype.UUID{Bytes: id, Valid: true} }

// skipInterval is how often a running partition reads the list of skipped events
// (besides at start and after a handler failure).
const skipInterval = 10 * time.Second

// loadSkips reads the ids of the events skipped in the projection.
func (w *worker) loadSkips(ctx context.Context) error {
	ids, err := queries.SkippedEventIDs(ctx, w.pool, w.p.Name)
	if err != nil {
		if errors.Is(eventstore.MissingTables(err), eventstore.ErrTablesMissing) {
			// A database without migration 004: nothing can be skipped there.
			w.skips, w.skipsLoaded = nil, time.Now()
			return nil
		}
		return err
	}
	skips := make(map[uuid.UUID]bool, len(ids))
	for _, id := range ids {
		skips[uuid.UUID(id.Bytes)] = true
	}
	w.skips, w.skipsLoaded = skips, time.Now()
	return nil
}
