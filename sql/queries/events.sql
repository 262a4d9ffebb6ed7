-- name: AppendEvents :many
-- Appends a batch of events to one aggregate in one round trip (see esgen_append).
SELECT a.global_position::bigint AS global_position, a.aggregate_version::bigint AS aggregate_version
FROM esgen_append(
    @aggregate_type::text, @aggregate_id::text, @expected_version::bigint, @partition_hash::bigint,
    @event_ids::uuid[], @event_types::text[], @event_versions::integer[], @payloads::jsonb[],
    @metadata::jsonb[], @correlation_ids::uuid[], @causation_ids::uuid[]) AS a;

-- name: AggregateVersion :one
-- The current version of an aggregate; no row when it does not exist.
SELECT version FROM esgen_aggregate_heads
WHERE aggregate_type = @aggregate_type AND aggregate_id = @aggregate_id;

-- name: StreamHead :one
-- The newest global position of a committed event (0 when there is none).
SELECT coalesce(max(global_position), 0)::bigint AS global_position
FROM esgen_events;

-- The reads of esgen_events by position and by aggregate are rendered in Go, with the
-- conditions they share written once: internal/readsql.

-- name: AppendEvent :one
-- Appends one event to one aggregate (see esgen_append_one); notify says whether this
-- session wants notifications (esgen.notify is not off).
SELECT a.global_position::bigint AS global_position, a.aggregate_version::bigint AS aggregate_version,
       a.notify::boolean AS notify
FROM esgen_append_one(
    @aggregate_type::text, @aggregate_id::text, @expected_version::bigint, @partition_hash::bigint,
    @event_id::uuid, @event_type::text, @event_version::integer, @payload::jsonb,
    @metadata::jsonb, @correlation_id::uuid, @causation_id::uuid, @notify_in_transaction::boolean) AS a;
