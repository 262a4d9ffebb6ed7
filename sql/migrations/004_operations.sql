-- esgen operations: events an operator skipped on purpose (esgen skip), with who, when
-- and why. A projection's worker passes a skipped event without calling the handler,
-- in the batch that moves its checkpoint past it, and records there when and in which
-- partition it did. The rows stay after esgen reset (a rebuild skips the event again)
-- and are shown by esgen status.
-- Safe to apply more than once: psql -v ON_ERROR_STOP=1 -f 004_operations.sql

CREATE TABLE IF NOT EXISTS esgen_skipped_events (
    projection       text        NOT NULL,
    event_id         uuid        NOT NULL,
    -- Why, and who: the operator's name as given to esgen skip, and the database user.
    reason           text        NOT NULL CHECK (reason <> ''),
    skipped_by       text        NOT NULL,
    database_user    text        NOT NULL DEFAULT session_user,
    skipped_at       timestamptz NOT NULL DEFAULT now(),
    -- Set by the worker that passed the event (NULL until then).
    passed_at        timestamptz,
    passed_partition integer,
    passed_count     integer,
    PRIMARY KEY (projection, event_id)
);
