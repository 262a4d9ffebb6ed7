-- esgen living spec: what a projection handles, and its rebuilds.
-- Safe to apply more than once: psql -v ON_ERROR_STOP=1 -f 005_living_spec.sql
--
-- esgen_projection_event_types records each event type a projection handles ('*':
-- every type). When a projection starts handling a type that has events at or before
-- its checkpoints, the projector refuses to start until someone decides: rebuild the
-- projection, or accept that those events are never handled (esgen accept-skip),
-- which is recorded here with how many events were skipped.
--
-- esgen_rebuilds holds a projection's last rebuild (esgen rebuild). Requesting one
-- deletes the projection's checkpoints and bumps its generation, so workers of the
-- old run stop at their next batch; the first projector that starts then calls the
-- projection's Reset hook (clearing the read model) and creates the checkpoints at the
-- start of the stream in one transaction, and records when, from where and how many
-- events it had to handle, for progress reports.

CREATE TABLE IF NOT EXISTS esgen_projection_event_types (
    projection  text        NOT NULL REFERENCES esgen_projections (name) ON DELETE CASCADE,
    event_type  text        NOT NULL,
    -- true: an operator accepted that the events of this type at or before the
    -- checkpoints when it was added are never handled.
    accepted    boolean     NOT NULL DEFAULT false,
    -- How many events were skipped (counted when the skip was accepted).
    skipped     bigint      NOT NULL DEFAULT 0 CHECK (skipped >= 0),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, event_type)
);

CREATE TABLE IF NOT EXISTS esgen_rebuilds (
    projection      text        PRIMARY KEY REFERENCES esgen_projections (name) ON DELETE CASCADE,
    -- The generation the rebuild runs in: workers of earlier generations are fenced off.
    generation      bigint      NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    -- Set by the projector that cleared the read model and reset the checkpoints
    -- (NULL while the rebuild waits for one).
    started_at      timestamptz,
    -- The oldest transaction still running when it started: every event of an older
    -- transaction was there to be handled again.
    started_xmin    xid8,
    -- The events of the projection's types in the stream when it started.
    events_at_start bigint
);
