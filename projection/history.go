package projection

// A projection's history: which event types it handles, and its rebuilds.
//
// Newly handled types. A checkpoint says how far a projection has read the stream,
// for the types it handled then. When its code starts handling another type, the
// events of that type at or before its checkpoints would never be read: the
// projection would silently lack them. So before its layout is prepared, [Run]
// compares the types it is given with those the projection handled before
// (esgen_projection_event_types, or esgen_projections.event_types for a projection
// that predates that table) and counts, for each new one, the events its checkpoints
// have passed (every committed event of the type minus those still to handle, in one
// snapshot). A new type with no such event is simply recorded; otherwise Run refuses
// to start with an [*UnhandledHistoryError] naming the types and counts and the two
// ways on: rebuild the projection ([RequestRebuild]), or accept that those events are
// never handled ([AcceptSkip], recorded and shown by [Status]).
//
// Rebuilds. [RequestRebuild] deletes the projection's checkpoints and bumps its
// generation in one transaction, after the batches in flight commit: every worker of
// the old run finds no checkpoint at its next batch and stops with a [*RebuiltError]
// (nothing it handles after the request can commit). The first [Run] to start then,
// in one transaction, calls the projection's Reset hook, which clears the read model,
// and creates the checkpoints at the start of the stream; so the read model is never
// cleared without the checkpoints, nor the reverse. The replay is an ordinary run:
// stopping its workers interrupts it and starting them resumes it from the
// checkpoints, without clearing anything again. [Status] reports its progress.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/generated/dbsqlc"
	"github.com/esgen-dev/esgen/internal/readsql"
)

// ErrDecisionNeeded is matched (errors.Is) by the errors of a projection that does
// not start until someone decides what it should do, such as [*UnhandledHistoryError].
// A projector process exits with code 2 on it, as for a bad setting.
var ErrDecisionNeeded = errors.New("projection: a decision is needed before it starts")

// allTypes stands for every event type in esgen_projection_event_types.
const allTypes = "*"

// TypeCount is an event type and a number of its events.
type TypeCount struct {
	Type   string `json:"type"`
	Events int64  `json:"events"`
}

// UnhandledHistoryError refuses to start a projection that now handles event types
// with events at or before its checkpoints, which it would never handle.
type UnhandledHistoryError struct {
	Projection string
	Types      []TypeCount // the new types with events behind the checkpoints
}

func (e *UnhandledHistoryError) Error() string {
	var parts, names []string
	for _, t := range e.Types {
		parts = append(parts, fmt.Sprintf("%s (%d %s)", t.Type, t.Events, plural(t.Events, "event", "events")))
		names = append(names, t.Type)
	}
	return fmt.Sprintf("projection %s now handles %s, but those events are at or before its checkpoints, so it would never handle them; it does not start. "+
		"Rebuild it from the start (its Reset clears the read model): esgen rebuild %s; or accept that they are never handled: esgen accept-skip %s %s",
		e.Projection, strings.Join(parts, ", "), e.Projection, e.Projection, strings.Join(names, " "))
}

// Is makes errors.Is(err, ErrDecisionNeeded) true.
func (e *UnhandledHistoryError) Is(target error) bool { return target == ErrDecisionNeeded }

// RebuiltError stops a worker whose projection is being rebuilt: its checkpoints are
// gone, and nothing it handles can commit.
type RebuiltError struct {
	Projection string
	Generation int64 // the generation of the rebuild
	Worker     int64 // the worker's generation
}

func (e *RebuiltError) Error() string {
	return fmt.Sprintf("projection %s is being rebuilt (esgen rebuild, generation %d): this worker of generation %d stopped; start it again to take part in the rebuild",
		e.Projection, e.Generation, e.Worker)
}

// failed names what failed for projection name; a database without esgen's tables
// gets the one message that says to migrate.
func failed(name, what string, err error) error {
	if err := eventstore.MissingTables(err); errors.Is(err, eventstore.ErrTablesMissing) {
		return fmt.Errorf("projection %s: %w", name, err)
	}
	return fmt.Errorf("projection %s: %s: %w", name, what, err)
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// prepareHistory runs before the layout is prepared: it starts a requested rebuild,
// or checks the types p handles against those the projection handled before. It
// holds one pool connection at a time.
func prepareHistory(ctx context.Context, pool *pgxpool.Pool, p Projection, cfg Config, log *slog.Logger) error {
	types := handledTypes(p)
	added, err := func() ([]string, error) {
		// The projection's row, locked: starts and rebuilds take turns.
		tx, err := pool.Begin(ctx)
		if err != nil {
			return nil, fmt.Errorf("projection %s: begin: %w", p.Name, err)
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		proj, err := queries.LockProjection(ctx, tx, p.Name)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil // a new projection handles every event of its types
		}
		if err != nil {
			return nil, failed(p.Name, "lock", err)
		}
		rb, err := queries.LockPendingRebuild(ctx, tx, p.Name)
		switch {
		case err == nil:
			if int(proj.PartitionCount) != cfg.TotalPartitions && !cfg.Rescale {
				// A worker that ensureLayout would refuse does not start the rebuild
				// either: the read model stays as it is until a worker of the
				// projection's count (or one with Rescale) starts it.
				return nil, mismatch(proj, cfg.TotalPartitions)
			}
			return nil, startRebuild(ctx, tx, p, proj, rb, types, log)
		case !errors.Is(err, pgx.ErrNoRows):
			return nil, failed(p.Name, "look up rebuilds", err)
		}
		added, err := newTypes(ctx, tx, p.Name, proj.EventTypes, types)
		if err != nil || len(added) > 0 {
			return added, err
		}
		if err := queries.RecordEventTypes(ctx, tx, dbsqlc.RecordEventTypesParams{Projection: p.Name, EventTypes: types}); err != nil {
			return nil, fmt.Errorf("projection %s: record its event types: %w", p.Name, err)
		}
		return nil, commit(ctx, tx, p.Name)
	}()
	if err != nil || len(added) == 0 {
		return err
	}
	counts, err := countBehind(ctx, pool, p.Name, added)
	if err != nil {
		return err
	}
	var refused []TypeCount
	var fine []string
	for _, c := range counts {
		if c.Events > 0 {
			refused = append(refused, c)
		} else {
			fine = append(fine, c.Type)
		}
	}
	record := slices.DeleteFunc(slices.Clone(types), func(t string) bool {
		return slices.ContainsFunc(refused, func(c TypeCount) bool { return c.Type == t })
	})
	if err := queries.RecordEventTypes(ctx, pool, dbsqlc.RecordEventTypesParams{Projection: p.Name, EventTypes: record}); err != nil {
		return fmt.Errorf("projection %s: record its event types: %w", p.Name, err)
	}
	if len(refused) > 0 {
		log.Error("new event types have events behind the checkpoints", "event_types", refused)
		return &UnhandledHistoryError{Projection: p.Name, Types: refused}
	}
	log.Info("handling new event types; none of their events is behind the checkpoints", "event_types", fine)
	return nil
}

// countBehind counts, for each type, the events behind the projection's checkpoints
// ([behind]), in one read-only snapshot.
func countBehind(ctx context.Context, db Beginner, name string, types []string) ([]TypeCount, error) {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("projection %s: begin: %w", name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	counts, err := behind(ctx, tx, name, types)
	if err != nil {
		return nil, err
	}
	return counts, tx.Commit(ctx)
}

// handledTypes are the types p handles as recorded: its event types, or "*".
func handledTypes(p Projection) []string {
	if len(p.EventTypes) == 0 {
		return []string{allTypes}
	}
	return p.EventTypes
}

// newTypes returns the types of want that the projection did not handle before: not
// recorded, nor in esgen_projections.event_types (empty there: every type). For a
// projection of every type ("*") that handled only some before, they are the other
// types in the stream.
func newTypes(ctx context.Context, db DBTX, name string, previous, want []string) ([]string, error) {
	records, err := queries.ListProjectionEventTypes(ctx, db, name)
	if err != nil {
		return nil, failed(name, "list its event types", err)
	}
	if len(previous) == 0 {
		return nil, nil // it handled every type
	}
	known := slices.Clone(previous)
	for _, r := range records {
		if r.EventType == allTypes {
			return nil, nil
		}
		known = append(known, r.EventType)
	}
	if slices.Equal(want, []string{allTypes}) {
		others, err := queries.DistinctEventTypes(ctx, db, known)
		if err != nil {
			return nil, fmt.Errorf("projection %s: list the stream's event types: %w", name, err)
		}
		return others, nil
	}
	var added []string
	for _, t := range want {
		if !slices.Contains(known, t) {
			added = append(added, t)
		}
	}
	return added, nil
}

// behind counts, for each type, the events of the type that the projection's
// checkpoints have passed: every committed event of it, minus those the live
// checkpoints still have to handle (after their position, or in their holes). Run it
// in a repeatable-read transaction, so that both come from one snapshot.
func behind(ctx context.Context, db DBTX, name string, types []string) ([]TypeCount, error) {
	if len(types) == 0 {
		return nil, nil
	}
	cps, err := queries.ListCheckpoints(ctx, db, name)
	if err != nil {
		return nil, fmt.Errorf("projection %s: list checkpoints: %w", name, err)
	}
	out := make([]TypeCount, 0, len(types))
	for _, t := range types {
		n, err := queries.CountEventsOfType(ctx, db, t)
		if err != nil {
			return nil, fmt.Errorf("projection %s: count %s events: %w", name, t, err)
		}
		for _, c := range cps {
			if c.Retired {
				continue
			}
			cur := cursorOf(c)
			txs, positions := cur.HoleArrays()
			st := readsql.PartitionLag(readsql.Filter{
				AfterTransactionID: cur.TransactionID, AfterPosition: cur.GlobalPosition,
				TotalPartitions: int(c.PartitionCount), PartitionKey: int(c.PartitionKey), EventTypes: []string{t},
			}, readsql.Holes{TransactionIDs: txs, Positions: positions}, name)
			var lag int64
			if err := db.QueryRow(ctx, st.SQL, st.Args...).Scan(&lag); err != nil {
				return nil, fmt.Errorf("projection %s: count %s events of partition %d: %w", name, t, c.PartitionKey, err)
			}
			n -= lag
		}
		out = append(out, TypeCount{Type: t, Events: n})
	}
	return out, nil
}

// startRebuild carries out a requested rebuild: in tx, which holds the projection's
// row, it clears the read model with the projection's Reset hook, creates the
// checkpoints of the rebuild's generation at the start of the stream and records the
// types the projection handles from now on.
func startRebuild(ctx context.Context, tx pgx.Tx, p Projection, proj dbsqlc.EsgenProjection, rb dbsqlc.EsgenRebuild, types []string, log *slog.Logger) error {
	if p.Reset == nil {
		return fmt.Errorf("projection %s: a rebuild was requested (esgen rebuild), but the projection has no Reset hook to clear its read model (Projection.Reset); give it one, or clear the read model yourself and use esgen reset", p.Name)
	}
	if _, err := queries.LockAllCheckpoints(ctx, tx, p.Name); err != nil {
		return fmt.Errorf("projection %s: rebuild: lock checkpoints: %w", p.Name, err)
	}
	if err := queries.DeleteAllCheckpoints(ctx, tx, p.Name); err != nil {
		return fmt.Errorf("projection %s: rebuild: delete checkpoints: %w", p.Name, err)
	}
	if err := p.Reset(ctx, tx); err != nil {
		return fmt.Errorf("projection %s: rebuild: Reset (clearing the read model) failed; the rebuild stays requested: %w", p.Name, err)
	}
	if err := insertLayout(ctx, tx, p.Name, proj.Generation, int(proj.PartitionCount), eventstore.Cursor{}); err != nil {
		return err
	}
	if err := queries.ClearEventTypes(ctx, tx, p.Name); err != nil {
		return fmt.Errorf("projection %s: rebuild: %w", p.Name, err)
	}
	if err := queries.RecordEventTypes(ctx, tx, dbsqlc.RecordEventTypesParams{Projection: p.Name, EventTypes: types}); err != nil {
		return fmt.Errorf("projection %s: rebuild: %w", p.Name, err)
	}
	total, err := queries.CountEventsOfTypes(ctx, tx, p.EventTypes)
	if err != nil {
		return fmt.Errorf("projection %s: rebuild: count events: %w", p.Name, err)
	}
	if err := queries.StartRebuild(ctx, tx, dbsqlc.StartRebuildParams{Projection: p.Name, EventsAtStart: total}); err != nil {
		return fmt.Errorf("projection %s: rebuild: %w", p.Name, err)
	}
	if err := commit(ctx, tx, p.Name); err != nil {
		return err
	}
	log.Info("rebuild started: read model cleared (Reset), checkpoints at the start of the stream", "generation", proj.Generation, "events", total)
	return nil
}

// RequestRebuild requests a rebuild of projection name and returns its generation. In
// one transaction, after the batches in flight commit, it deletes the projection's
// checkpoints and bumps its generation: the projection's running workers stop at
// their next batch ([*RebuiltError]). The next [Run] of the projection (a projector
// started or restarted) clears the read model with the projection's Reset hook and
// replays every event from the start. It returns [ErrNotFound] for a projection that
// never ran.
func RequestRebuild(ctx context.Context, db Beginner, name string) (int64, error) {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return 0, fmt.Errorf("projection %s: begin: %w", name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := queries.LockProjection(ctx, tx, name); errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("projection %s: %w", name, ErrNotFound)
	} else if err != nil {
		return 0, failed(name, "lock", err)
	}
	if _, err := queries.LockAllCheckpoints(ctx, tx, name); err != nil {
		return 0, fmt.Errorf("projection %s: lock checkpoints: %w", name, err)
	}
	if err := queries.DeleteAllCheckpoints(ctx, tx, name); err != nil {
		return 0, fmt.Errorf("projection %s: delete checkpoints: %w", name, err)
	}
	gen, err := queries.BumpGeneration(ctx, tx, name)
	if err != nil {
		return 0, fmt.Errorf("projection %s: new generation: %w", name, err)
	}
	if err := queries.RequestRebuild(ctx, tx, dbsqlc.RequestRebuildParams{Projection: name, Generation: gen}); err != nil {
		return 0, failed(name, "request the rebuild", err)
	}
	return gen, commit(ctx, tx, name)
}

// AcceptSkip records that projection name handles eventTypes from now on without
// their events at or before its checkpoints, which it never handles: what
// [*UnhandledHistoryError] asks to decide. It returns how many events of each type
// that is, and records the counts, which [Status] shows. A type the projection
// handles already is an error; so is an unknown projection ([ErrNotFound]).
func AcceptSkip(ctx context.Context, db Beginner, name string, eventTypes []string) ([]TypeCount, error) {
	if len(eventTypes) == 0 {
		return nil, fmt.Errorf("projection %s: accept skip: name at least one event type", name)
	}
	// Count in one snapshot, then record.
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("projection %s: begin: %w", name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	proj, err := queries.GetProjection(ctx, tx, name)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("projection %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, failed(name, "look it up", err)
	}
	added, err := newTypes(ctx, tx, name, proj.EventTypes, eventTypes)
	if err != nil {
		return nil, err
	}
	for _, t := range eventTypes {
		if !slices.Contains(added, t) {
			return nil, fmt.Errorf("projection %s handles %s already: there is nothing to skip", name, t)
		}
	}
	counts, err := behind(ctx, tx, name, eventTypes)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("projection %s: %w", name, err)
	}

	rec, err := db.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return nil, fmt.Errorf("projection %s: begin: %w", name, err)
	}
	defer rec.Rollback(context.WithoutCancel(ctx))
	for _, c := range counts {
		if err := queries.AcceptSkip(ctx, rec, dbsqlc.AcceptSkipParams{Projection: name, EventType: c.Type, Skipped: c.Events}); err != nil {
			return nil, fmt.Errorf("projection %s: record the skip of %s: %w", name, c.Type, err)
		}
	}
	return counts, commit(ctx, rec, name)
}

// SkippedType is an event type whose earlier events a projection never handled, on
// purpose ([AcceptSkip]).
type SkippedType struct {
	Type       string    `json:"type"`
	Skipped    int64     `json:"skipped"` // events at or before the checkpoints when it was accepted
	AcceptedAt time.Time `json:"accepted_at"`
}

// RebuildStatus is a projection's last rebuild.
type RebuildStatus struct {
	Generation  int64      `json:"generation"`
	RequestedAt time.Time  `json:"requested_at"`
	StartedAt   *time.Time `json:"started_at,omitempty"` // nil: no projector has started it yet
	// EventsAtStart are the events of the projection's types when it started.
	EventsAtStart int64 `json:"events_at_start"`
	// Done is how many events the rebuild has handled, Total that plus the lag.
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// Rate is the events handled per second since the start, ETA the time the lag
	// takes at that rate (0 when caught up or unknown).
	Rate float64       `json:"rate"`
	ETA  time.Duration `json:"eta"`
	// CaughtUp: every event that was in the stream when the rebuild started is
	// handled again (or nothing is left).
	CaughtUp bool `json:"caught_up"`
}

// Pending reports whether no projector has started the rebuild yet.
func (r RebuildStatus) Pending() bool { return r.StartedAt == nil }

// historyStatus fills in the rebuild and the skipped types of st from the
// projection's checkpoints cps.
func historyStatus(ctx context.Context, db DBTX, st *ProjectionStatus, cps []dbsqlc.EsgenCheckpoint, now time.Time) error {
	records, err := queries.ListProjectionEventTypes(ctx, db, st.Name)
	if err != nil {
		return fmt.Errorf("projection %s: list its event types: %w", st.Name, err)
	}
	for _, r := range records {
		if r.Accepted {
			st.SkippedTypes = append(st.SkippedTypes, SkippedType{Type: r.EventType, Skipped: r.Skipped, AcceptedAt: r.RecordedAt.Time})
		}
	}
	rb, err := queries.GetRebuild(ctx, db, st.Name)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("projection %s: look up its rebuild: %w", st.Name, err)
	}
	rs := &RebuildStatus{Generation: rb.Generation, RequestedAt: rb.RequestedAt.Time, EventsAtStart: rb.EventsAtStart.Int64}
	st.Rebuild = rs
	if !rb.StartedAt.Valid {
		return nil
	}
	started := rb.StartedAt.Time
	rs.StartedAt = &started
	// Status reads the checkpoints and the rebuild in separate statements: only live
	// checkpoints of the rebuild (or a later layout) count, so a read that saw the
	// checkpoints before the rebuild started never reports it caught up.
	live, stale, passed := 0, false, true
	for _, c := range cps {
		if c.Generation >= rb.Generation {
			rs.Done += c.EventsHandled
		}
		if c.Retired {
			continue
		}
		live++
		stale = stale || c.Generation < rb.Generation
		passed = passed && cursorOf(c).Low().TransactionID >= rb.StartedXmin.Uint64
	}
	rs.CaughtUp = live > 0 && !stale && (st.Lag == 0 || passed)
	rs.Total = rs.Done + st.Lag
	if secs := now.Sub(started).Seconds(); secs > 0 {
		rs.Rate = float64(rs.Done) / secs
	}
	if !rs.CaughtUp && rs.Rate > 0 {
		rs.ETA = time.Duration(float64(st.Lag) / rs.Rate * float64(time.Second))
	}
	return nil
}

// rebuilt returns a [*RebuiltError] when a rebuild of the projection was requested
// after generation gen (the worker's), and nil otherwise.
func rebuilt(ctx context.Context, db DBTX, name string, gen int64) error {
	rb, err := queries.GetRebuild(ctx, db, name)
	if err != nil || rb.Generation <= gen {
		return nil
	}
	return &RebuiltError{Projection: name, Generation: rb.Generation, Worker: gen}
}
