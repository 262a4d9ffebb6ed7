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
-- Appends one event to an aggregate at any version (expected_version -1) or to a new
-- one (0), in one statement, with the rules of esgen_append (001_event_store.sql) and
-- without its PL/pgSQL, arrays and unnest: single-event appends are most appends, and a
-- statement prepared once costs the server less than the function's statements.
--
-- l takes the aggregate's advisory lock before the transaction writes anything; x then
-- gets the transaction id (the lock comes first, so ids grow with versions). h inserts
-- the head, or moves it on (expected version -1 only) unless a younger transaction
-- wrote it; ON CONFLICT works on the newest head whatever the statement's snapshot.
-- The event takes the head's new version. When nothing was written (a version
-- mismatch, a younger transaction), the same append is run by esgen_append, which
-- raises the error (ESG01 with the actual version, or 40001) and so stays the one place
-- that words it; it appends if it finds nothing wrong (it reads the head anew).
--
-- notify: whether this session wants notifications (esgen.notify is not off); with
-- notify_in_transaction the statement also notifies esgen_events (at the commit).
WITH l AS (
    SELECT pg_advisory_xact_lock(hashtextextended(@aggregate_type::text || '/' || @aggregate_id::text, 0))
), x AS (
    SELECT pg_current_xact_id() AS tx FROM l
), h AS (
    INSERT INTO esgen_aggregate_heads AS h (aggregate_type, aggregate_id, version, last_transaction_id)
    SELECT @aggregate_type::text, @aggregate_id::text, 1, x.tx FROM x
    ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
    SET version = h.version + 1, last_transaction_id = excluded.last_transaction_id, updated_at = now()
    WHERE @expected_version::bigint < 0 AND h.last_transaction_id <= excluded.last_transaction_id
    RETURNING h.version
), e AS (
    INSERT INTO esgen_events AS e (event_id, aggregate_type, aggregate_id, aggregate_version,
                                   event_type, event_version, partition_hash, payload, metadata,
                                   correlation_id, causation_id)
    SELECT @event_id::uuid, @aggregate_type::text, @aggregate_id::text, h.version,
           @event_type::text, @event_version::integer, @partition_hash::bigint, @payload::jsonb,
           coalesce(@metadata::jsonb, '{}'::jsonb), @correlation_id::uuid, @causation_id::uuid
    FROM h
    RETURNING e.global_position, e.aggregate_version
)
SELECT e.global_position::bigint AS global_position, e.aggregate_version::bigint AS aggregate_version,
       (CASE WHEN coalesce(current_setting('esgen.notify', true), '') = 'off' THEN false
             WHEN @notify_in_transaction::boolean THEN pg_notify('esgen_events', '') IS NOT NULL
             ELSE true END)::boolean AS notify
FROM e
UNION ALL
SELECT a.global_position, a.aggregate_version, coalesce(current_setting('esgen.notify', true), '') <> 'off'
FROM esgen_append(@aggregate_type::text, @aggregate_id::text, @expected_version::bigint, @partition_hash::bigint,
                  ARRAY[@event_id::uuid], ARRAY[@event_type::text], ARRAY[@event_version::integer],
                  ARRAY[@payload::jsonb], ARRAY[@metadata::jsonb], ARRAY[@correlation_id::uuid],
                  ARRAY[@causation_id::uuid]) AS a
WHERE NOT EXISTS (SELECT FROM e);

-- name: AppendEventAt :one
-- AppendEvent for an aggregate that must be at version expected_version (n > 0): the
-- head moves on only from that version, and only if no younger transaction wrote it
-- (UPDATE rechecks the newest head whatever the statement's snapshot).
WITH l AS (
    SELECT pg_advisory_xact_lock(hashtextextended(@aggregate_type::text || '/' || @aggregate_id::text, 0))
), x AS (
    SELECT pg_current_xact_id() AS tx FROM l
), h AS (
    UPDATE esgen_aggregate_heads AS h
    SET version = h.version + 1, last_transaction_id = x.tx, updated_at = now()
    FROM x
    WHERE h.aggregate_type = @aggregate_type::text AND h.aggregate_id = @aggregate_id::text
      AND h.version = @expected_version::bigint AND h.last_transaction_id <= x.tx
    RETURNING h.version
), e AS (
    INSERT INTO esgen_events AS e (event_id, aggregate_type, aggregate_id, aggregate_version,
                                   event_type, event_version, partition_hash, payload, metadata,
                                   correlation_id, causation_id)
    SELECT @event_id::uuid, @aggregate_type::text, @aggregate_id::text, h.version,
           @event_type::text, @event_version::integer, @partition_hash::bigint, @payload::jsonb,
           coalesce(@metadata::jsonb, '{}'::jsonb), @correlation_id::uuid, @causation_id::uuid
    FROM h
    RETURNING e.global_position, e.aggregate_version
)
SELECT e.global_position::bigint AS global_position, e.aggregate_version::bigint AS aggregate_version,
       (CASE WHEN coalesce(current_setting('esgen.notify', true), '') = 'off' THEN false
             WHEN @notify_in_transaction::boolean THEN pg_notify('esgen_events', '') IS NOT NULL
             ELSE true END)::boolean AS notify
FROM e
UNION ALL
SELECT a.global_position, a.aggregate_version, coalesce(current_setting('esgen.notify', true), '') <> 'off'
FROM esgen_append(@aggregate_type::text, @aggregate_id::text, @expected_version::bigint, @partition_hash::bigint,
                  ARRAY[@event_id::uuid], ARRAY[@event_type::text], ARRAY[@event_version::integer],
                  ARRAY[@payload::jsonb], ARRAY[@metadata::jsonb], ARRAY[@correlation_id::uuid],
                  ARRAY[@causation_id::uuid]) AS a
WHERE NOT EXISTS (SELECT FROM e);
