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

-- name: AppendCombined :many
-- Appends one event to each of several distinct aggregates in one statement (one
-- implicit transaction): the single-event appends that concurrent callers of one pool
-- make at the same moment, combined so that they share a round trip and a commit
-- (eventstore's combiner). Row i of the arrays is one caller's append.
--
-- Each append follows AppendEvent's rules: the aggregate's advisory lock before the
-- transaction id, the head moved on only from the expected version and only if no
-- younger transaction wrote it. The locks are only tried (pg_try_advisory_xact_lock),
-- so the statement never waits for one and cannot take part in a deadlock; an append
-- whose lock is held elsewhere, whose version does not match or whose head a younger
-- transaction wrote is left out and gets no row back (its caller runs it alone, and
-- that run waits for the lock or words the error). The rows back are the appends that
-- were written, by their ordinal (1-based) in the arrays.
WITH r AS (
    -- Set-returning functions in one select list run in step: row i of every array.
    SELECT unnest(@aggregate_types::text[]) AS aggregate_type, unnest(@aggregate_ids::text[]) AS aggregate_id,
           unnest(@expected_versions::bigint[]) AS expected_version, unnest(@event_ids::uuid[]) AS event_id,
           unnest(@event_types::text[]) AS event_type, unnest(@event_versions::integer[]) AS event_version,
           unnest(@partition_hashes::bigint[]) AS partition_hash, unnest(@payloads::jsonb[]) AS payload,
           unnest(@metadata::jsonb[]) AS metadata, unnest(@correlation_ids::uuid[]) AS correlation_id,
           unnest(@causation_ids::uuid[]) AS causation_id,
           generate_subscripts(@aggregate_types::text[], 1) AS ord
), l AS (
    SELECT r.* FROM r
    WHERE pg_try_advisory_xact_lock(hashtextextended(r.aggregate_type || '/' || r.aggregate_id, 0))
), x AS (
    SELECT pg_current_xact_id() AS tx FROM (SELECT count(*) FROM l) AS locked
), a AS (
    INSERT INTO esgen_aggregate_heads AS h (aggregate_type, aggregate_id, version, last_transaction_id)
    SELECT l.aggregate_type, l.aggregate_id, 1, x.tx FROM l, x WHERE l.expected_version < 0
    ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
    SET version = h.version + 1, last_transaction_id = excluded.last_transaction_id, updated_at = now()
    WHERE h.last_transaction_id <= excluded.last_transaction_id
    RETURNING h.aggregate_type, h.aggregate_id, h.version
), n AS (
    INSERT INTO esgen_aggregate_heads AS h (aggregate_type, aggregate_id, version, last_transaction_id)
    SELECT l.aggregate_type, l.aggregate_id, 1, x.tx FROM l, x WHERE l.expected_version = 0
    ON CONFLICT (aggregate_type, aggregate_id) DO NOTHING
    RETURNING h.aggregate_type, h.aggregate_id, h.version
), u AS (
    UPDATE esgen_aggregate_heads AS h
    SET version = h.version + 1, last_transaction_id = x.tx, updated_at = now()
    FROM l, x
    WHERE l.expected_version > 0 AND h.aggregate_type = l.aggregate_type AND h.aggregate_id = l.aggregate_id
      AND h.version = l.expected_version AND h.last_transaction_id <= x.tx
    RETURNING h.aggregate_type, h.aggregate_id, h.version
), hs AS (
    SELECT * FROM a UNION ALL SELECT * FROM n UNION ALL SELECT * FROM u
), e AS (
    INSERT INTO esgen_events AS e (event_id, aggregate_type, aggregate_id, aggregate_version,
                                   event_type, event_version, partition_hash, payload, metadata,
                                   correlation_id, causation_id)
    SELECT l.event_id, l.aggregate_type, l.aggregate_id, hs.version, l.event_type, l.event_version,
           l.partition_hash, l.payload, coalesce(l.metadata, '{}'::jsonb), l.correlation_id, l.causation_id
    FROM l JOIN hs ON hs.aggregate_type = l.aggregate_type AND hs.aggregate_id = l.aggregate_id
    ORDER BY l.ord
    RETURNING e.aggregate_type, e.aggregate_id, e.global_position, e.aggregate_version
)
SELECT l.ord::bigint AS ord, e.global_position::bigint AS global_position,
       e.aggregate_version::bigint AS aggregate_version,
       (coalesce(current_setting('esgen.notify', true), '') <> 'off')::boolean AS notify
FROM e JOIN l ON l.aggregate_type = e.aggregate_type AND l.aggregate_id = e.aggregate_id;
