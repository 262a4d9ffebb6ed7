-- Operations on projections: events skipped on purpose (esgen skip).

-- name: InsertSkippedEvent :execrows
-- Records an event to skip; no-op when it is recorded already.
INSERT INTO esgen_skipped_events (projection, event_id, reason, skipped_by)
VALUES (@projection::text, @event_id::uuid, @reason::text, @skipped_by::text)
ON CONFLICT (projection, event_id) DO NOTHING;

-- name: SkippedEventIDs :many
-- The ids of the events skipped in a projection (read by its workers).
SELECT event_id FROM esgen_skipped_events WHERE projection = @projection::text;

-- name: MarkSkippedPassed :exec
-- Records, in the batch that moves the checkpoint past it, that a worker passed a
-- skipped event.
UPDATE esgen_skipped_events
SET passed_at = now(), passed_partition = @partition_key::integer, passed_count = @partition_count::integer
WHERE projection = @projection::text AND event_id = @event_id::uuid;

-- name: ListSkippedEvents :many
-- The events skipped in a projection ('' for all), with what is known of each event.
SELECT s.projection, s.event_id, s.reason, s.skipped_by, s.database_user, s.skipped_at,
       s.passed_at, s.passed_partition, s.passed_count,
       e.transaction_id, e.global_position, e.event_type, e.aggregate_type, e.aggregate_id
FROM esgen_skipped_events s
LEFT JOIN esgen_events e ON e.event_id = s.event_id
WHERE (@projection::text = '' OR s.projection = @projection::text)
ORDER BY s.projection, s.skipped_at, s.event_id;

-- name: GetEventPlace :one
-- Where an event is: its position, type, aggregate and partition hash.
SELECT transaction_id, global_position, event_type, aggregate_type, aggregate_id, partition_hash
FROM esgen_events WHERE event_id = @event_id::uuid;
