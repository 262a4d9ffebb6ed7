-- name: AppendEvents :many
-- Appends a batch of events to one aggregate in one round trip (see esgen_append).
SELECT a.global_position::bigint AS global_position, a.aggregate_version::bigint AS aggregate_version
FROM esgen_append(
    @aggregate_type::text, @aggregate_id::text, @expected_version::bigint, @partition_hash::bigint,
    @event_ids::uuid[], @event_types::text[], @event_versions::integer[], @payloads::jsonb[],
    @metadata::jsonb[], @correlation_ids::uuid[], @causation_ids::uuid[]) AS a;

-- name: ReadAll :many
-- Reads the global stream after a position in commit-safe order: only events of
-- transactions older than every running one, so nothing that commits later can land
-- before the returned events. The partition and event type filters run here.
-- "OR (SELECT false)" never matches; it keeps the planner on the commit-order index,
-- which it would leave for a bitmap scan and a sort on its 0.5% guess for the modulo.
SELECT global_position, transaction_id, event_id, aggregate_type, aggregate_id, aggregate_version,
       event_type, event_version, partition_hash, payload, metadata, correlation_id, causation_id, created_at
FROM esgen_events
WHERE (transaction_id, global_position) > (@after_transaction_id::xid8, @after_position::bigint)
  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
  AND (@total_partitions::integer <= 1 OR partition_hash % @total_partitions::integer = @partition_key::integer OR (SELECT false))
  AND (cardinality(@event_types::text[]) = 0 OR event_type = ANY (@event_types::text[]))
ORDER BY transaction_id, global_position
LIMIT @batch_limit::integer;

-- name: ReadAggregate :many
-- Reads one aggregate's events between two versions (inclusive), in version order.
SELECT global_position, transaction_id, event_id, aggregate_type, aggregate_id, aggregate_version,
       event_type, event_version, partition_hash, payload, metadata, correlation_id, causation_id, created_at
FROM esgen_events
WHERE aggregate_type = @aggregate_type AND aggregate_id = @aggregate_id
  AND aggregate_version >= @from_version::bigint AND aggregate_version <= @to_version::bigint
ORDER BY aggregate_version;

-- name: AggregateVersion :one
-- The current version of an aggregate; no row when it does not exist.
SELECT version FROM esgen_aggregate_heads
WHERE aggregate_type = @aggregate_type AND aggregate_id = @aggregate_id;

-- name: StreamHead :one
-- The newest position that a commit-safe reader can see now.
SELECT coalesce(max(global_position), 0)::bigint AS global_position
FROM esgen_events
WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot());
