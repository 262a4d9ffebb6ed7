-- esgen event store: the event log, aggregate heads and the append function.
-- Safe to apply more than once: psql -v ON_ERROR_STOP=1 -f 001_event_store.sql

CREATE TABLE IF NOT EXISTS esgen_events (
    global_position   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The appending transaction. Readers order by (transaction_id, global_position)
    -- and only read below the oldest running transaction, so a late commit is never skipped.
    transaction_id    xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id          uuid        NOT NULL,
    aggregate_type    text        NOT NULL,
    aggregate_id      text        NOT NULL,
    aggregate_version bigint      NOT NULL,
    event_type        text        NOT NULL,
    event_version     integer     NOT NULL DEFAULT 1,
    -- FNV-1a-32 of aggregate_id (0 .. 2^32-1): partition = partition_hash % total_partitions.
    partition_hash    bigint      NOT NULL,
    payload           jsonb       NOT NULL,
    metadata          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    correlation_id    uuid,
    causation_id      uuid,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT esgen_events_event_id_key UNIQUE (event_id),
    CONSTRAINT esgen_events_aggregate_version_key UNIQUE (aggregate_type, aggregate_id, aggregate_version),
    CONSTRAINT esgen_events_version_positive CHECK (aggregate_version > 0),
    CONSTRAINT esgen_events_hash_range CHECK (partition_hash >= 0 AND partition_hash < 4294967296)
);

CREATE INDEX IF NOT EXISTS esgen_events_commit_order ON esgen_events (transaction_id, global_position);

CREATE TABLE IF NOT EXISTS esgen_aggregate_heads (
    aggregate_type      text        NOT NULL,
    aggregate_id        text        NOT NULL,
    version             bigint      NOT NULL,
    last_transaction_id xid8        NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- esgen_append appends events to one aggregate in one statement.
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
-- It notifies channel esgen_events unless the setting esgen.notify is off.
CREATE OR REPLACE FUNCTION esgen_append(
    p_aggregate_type   text,
    p_aggregate_id     text,
    p_expected_version bigint,
    p_partition_hash   bigint,
    p_event_ids        uuid[],
    p_event_types      text[],
    p_event_versions   integer[],
    p_payloads         jsonb[],
    p_metadata         jsonb[],
    p_correlation_ids  uuid[],
    p_causation_ids    uuid[]
) RETURNS TABLE (global_position bigint, aggregate_version bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    n         bigint := coalesce(cardinality(p_event_ids), 0);
    cur       bigint;
    last_tx   xid8;
    this_tx   xid8;
BEGIN
    IF n = 0 THEN
        RAISE EXCEPTION 'esgen_append: no events' USING ERRCODE = '22023';
    END IF;
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
        VALUES (p_aggregate_type, p_aggregate_id, n, this_tx);
        cur := 0;
    ELSE
        UPDATE esgen_aggregate_heads h
        SET version = cur + n, last_transaction_id = this_tx, updated_at = now()
        WHERE h.aggregate_type = p_aggregate_type AND h.aggregate_id = p_aggregate_id;
    END IF;

    RETURN QUERY
    INSERT INTO esgen_events AS e (event_id, aggregate_type, aggregate_id, aggregate_version,
                                   event_type, event_version, partition_hash, payload, metadata,
                                   correlation_id, causation_id)
    SELECT u.id, p_aggregate_type, p_aggregate_id, cur + u.ord,
           u.typ, u.ver, p_partition_hash, u.payload, coalesce(u.meta, '{}'::jsonb),
           u.corr, u.caus
    FROM unnest(p_event_ids, p_event_types, p_event_versions, p_payloads, p_metadata,
                p_correlation_ids, p_causation_ids)
         WITH ORDINALITY AS u(id, typ, ver, payload, meta, corr, caus, ord)
    ORDER BY u.ord
    RETURNING e.global_position, e.aggregate_version;

    -- Wake listening projections. NOTIFY takes a server-wide lock from the commit of
    -- the transaction until it ends, so concurrent appending transactions commit one at
    -- a time; SET esgen.notify = off (per session, role or database) trades that for
    -- wake-up by polling.
    IF coalesce(current_setting('esgen.notify', true), '') <> 'off' THEN
        PERFORM pg_notify('esgen_events', '');
    END IF;
END
$fn$;
