-- Queries of projection/history.go: the event types a projection handles, and its
-- rebuilds (sql/migrations/005_living_spec.sql).

-- name: ListProjectionEventTypes :many
SELECT projection, event_type, accepted, skipped, recorded_at
FROM esgen_projection_event_types
WHERE projection = @projection::text
ORDER BY event_type;

-- name: RecordEventTypes :exec
-- Records types a projection handles from now on, without skipping anything.
INSERT INTO esgen_projection_event_types (projection, event_type)
SELECT @projection::text, t FROM unnest(@event_types::text[]) AS t
ON CONFLICT (projection, event_type) DO NOTHING;

-- name: AcceptSkip :exec
-- Records an accepted skip: the type's events at or before the checkpoints are never handled.
INSERT INTO esgen_projection_event_types (projection, event_type, accepted, skipped)
VALUES (@projection::text, @event_type::text, true, @skipped::bigint)
ON CONFLICT (projection, event_type) DO UPDATE SET accepted = true, skipped = EXCLUDED.skipped, recorded_at = now();

-- name: ClearEventTypes :exec
DELETE FROM esgen_projection_event_types WHERE projection = @projection::text;

-- name: CountEventsOfType :one
SELECT count(*)::bigint AS n FROM esgen_events WHERE event_type = @event_type::text;

-- name: CountEventsOfTypes :one
-- The committed events of some types (every type with an empty list).
SELECT count(*)::bigint AS n FROM esgen_events
WHERE cardinality(@event_types::text[]) = 0 OR event_type = ANY (@event_types::text[]);

-- name: DistinctEventTypes :many
-- Every event type in the stream except the given ones (a projection of every type
-- that handled fewer before).
SELECT DISTINCT event_type FROM esgen_events WHERE NOT (event_type = ANY (@known::text[])) ORDER BY event_type;

-- name: LockAllCheckpoints :many
-- Every checkpoint of a projection, locked: batches in flight commit first.
SELECT partition_key FROM esgen_checkpoints WHERE projection = @projection::text FOR UPDATE;

-- name: DeleteAllCheckpoints :exec
DELETE FROM esgen_checkpoints WHERE projection = @projection::text;

-- name: BumpGeneration :one
-- A new generation for a rebuild: workers of the old one find no checkpoint and stop.
UPDATE esgen_projections SET generation = generation + 1, changed_at = now()
WHERE name = @name::text
RETURNING generation;

-- name: RequestRebuild :exec
INSERT INTO esgen_rebuilds (projection, generation)
VALUES (@projection::text, @generation::bigint)
ON CONFLICT (projection) DO UPDATE
SET generation = EXCLUDED.generation, requested_at = now(), started_at = NULL, started_xmin = NULL, events_at_start = NULL;

-- name: LockPendingRebuild :one
-- The projection's rebuild that no projector has started yet, locked.
SELECT projection, generation, requested_at, started_at, started_xmin, events_at_start
FROM esgen_rebuilds
WHERE projection = @projection::text AND started_at IS NULL
FOR UPDATE;

-- name: StartRebuild :exec
UPDATE esgen_rebuilds
SET started_at = now(), started_xmin = pg_snapshot_xmin(pg_current_snapshot()), events_at_start = @events_at_start::bigint
WHERE projection = @projection::text;

-- name: GetRebuild :one
SELECT projection, generation, requested_at, started_at, started_xmin, events_at_start
FROM esgen_rebuilds
WHERE projection = @projection::text;
