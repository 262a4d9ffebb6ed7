-- esgen single-event append: the error of an append that wrote nothing.
-- Safe to apply more than once: psql -v ON_ERROR_STOP=1 -f 007_append_one.sql
--
-- A single event is appended by one statement (esgen's AppendEvent query, in
-- sql/queries/events.sql of the esgen module) with the rules of esgen_append: the
-- aggregate's advisory lock before the transaction writes anything, the head inserted
-- or moved on only if the expected version matches and no younger transaction wrote
-- it, then the event. When that statement wrote nothing it calls esgen_append_failed,
-- which says why, as esgen_append would have.

-- esgen_append_failed raises the error of an append to one aggregate that wrote
-- nothing: SQLSTATE ESG01 (with the actual version as DETAIL) when the aggregate is not
-- at p_expected_version (-1 any, 0 none, n > 0 exactly n), else SQLSTATE 40001
-- (serialization_failure: retry the transaction), since then a younger transaction
-- wrote the aggregate. It never returns; its result type lets a statement call it in
-- place of the position it did not get. Call it holding the aggregate's advisory lock
-- (in the appending transaction), so that the head it reads is the one the append saw.
CREATE OR REPLACE FUNCTION esgen_append_failed(
    p_aggregate_type   text,
    p_aggregate_id     text,
    p_expected_version bigint
) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    cur bigint;
BEGIN
    SELECT h.version INTO cur
    FROM esgen_aggregate_heads h
    WHERE h.aggregate_type = p_aggregate_type AND h.aggregate_id = p_aggregate_id;

    IF p_expected_version >= 0 AND coalesce(cur, 0) <> p_expected_version THEN
        RAISE EXCEPTION 'wrong expected version for % %: expected %, actual %',
            p_aggregate_type, p_aggregate_id, p_expected_version, coalesce(cur, 0)
            USING ERRCODE = 'ESG01', DETAIL = coalesce(cur, 0)::text;
    END IF;
    RAISE EXCEPTION 'aggregate % % was written by a younger transaction; retry this transaction',
        p_aggregate_type, p_aggregate_id
        USING ERRCODE = '40001';
END
$fn$;
