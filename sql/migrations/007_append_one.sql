-- esgen single-event append: esgen_append for one event, with scalar parameters.
-- Safe to apply more than once: psql -v ON_ERROR_STOP=1 -f 007_append_one.sql

-- esgen_append_one appends one event to one aggregate in one statement: the same rules
-- as esgen_append (001_event_store.sql), without arrays, unnest or a set of rows to
-- return, which most appends (one event per command) do not need.
--
-- p_expected_version: -1 any version, 0 the aggregate must not exist, n > 0 its version must be n.
-- A version mismatch raises SQLSTATE ESG01 with the actual version as DETAIL.
--
-- Appends to one aggregate are serialized by a transaction-level advisory lock that is
-- taken before the transaction writes anything, so transaction ids grow with aggregate
-- versions and a reader ordering by transaction id sees each aggregate in version order.
-- A transaction that already wrote elsewhere and would break that order gets SQLSTATE
-- 40001 (serialization_failure): retry it.
--
-- p_notify: true notifies channel esgen_events (at the transaction's commit) unless the
-- setting esgen.notify is off, as esgen_append does; false never notifies, for a caller
-- that notifies after the commit itself (a NOTIFY inside the transaction holds a
-- server-wide lock from its commit until it ends, so notifying transactions commit one
-- at a time). The result's notify column says whether this session wants notifications
-- (esgen.notify is not off), so that such a caller knows whether to send one.
--
-- It returns the event's global position and the aggregate's new version.
CREATE OR REPLACE FUNCTION esgen_append_one(
    p_aggregate_type   text,
    p_aggregate_id     text,
    p_expected_version bigint,
    p_partition_hash   bigint,
    p_event_id         uuid,
    p_event_type       text,
    p_event_version    integer,
    p_payload          jsonb,
    p_metadata         jsonb,
    p_correlation_id   uuid,
    p_causation_id     uuid,
    p_notify           boolean,
    OUT global_position   bigint,
    OUT aggregate_version bigint,
    OUT notify            boolean
)
LANGUAGE plpgsql AS $fn$
DECLARE
    cur       bigint;
    last_tx   xid8;
    this_tx   xid8;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_aggregate_type || '/' || p_aggregate_id, 0));

    SELECT h.version, h.last_transaction_id INTO cur, last_tx
    FROM esgen_aggregate_heads h
    WHERE h.aggregate_type = p_aggregate_type AND h.aggregate_id = p_aggregate_id;

    IF p_expected_version >= 0 AND coalesce(cur, 0) <> p_expected_version THEN
        RAISE EXCEPTION 'wrong expected version for % %: expected %, actual %',
            p_aggregate_type, p_aggregate_id, p_expected_version, coalesce(cur, 0)
            USING ERRCODE = 'ESG01', DETAIL = coalesce(cur, 0)::text;
    END IF;

    this_tx := pg_current_xact_id();
    IF last_tx IS NOT NULL AND last_tx > this_tx THEN
        RAISE EXCEPTION 'aggregate % % was written by a younger transaction; retry this transaction',
            p_aggregate_type, p_aggregate_id
            USING ERRCODE = '40001';
    END IF;

    IF cur IS NULL THEN
        INSERT INTO esgen_aggregate_heads (aggregate_type, aggregate_id, version, last_transaction_id)
        VALUES (p_aggregate_type, p_aggregate_id, 1, this_tx);
        cur := 0;
    ELSE
        UPDATE esgen_aggregate_heads h
        SET version = cur + 1, last_transaction_id = this_tx, updated_at = now()
        WHERE h.aggregate_type = p_aggregate_type AND h.aggregate_id = p_aggregate_id;
    END IF;

    INSERT INTO esgen_events AS e (event_id, aggregate_type, aggregate_id, aggregate_version,
                                   event_type, event_version, partition_hash, payload, metadata,
                                   correlation_id, causation_id)
    VALUES (p_event_id, p_aggregate_type, p_aggregate_id, cur + 1,
            p_event_type, p_event_version, p_partition_hash, p_payload,
            coalesce(p_metadata, '{}'::jsonb), p_correlation_id, p_causation_id)
    RETURNING e.global_position, e.aggregate_version INTO global_position, aggregate_version;

    notify := coalesce(current_setting('esgen.notify', true), '') <> 'off';
    IF p_notify AND notify THEN
        PERFORM pg_notify('esgen_events', '');
    END IF;
END
$fn$;
