-- esgen projections: one row per projection (its partition layout) and one checkpoint
-- per projection, layout generation and partition.
-- Safe to apply more than once: psql -v ON_ERROR_STOP=1 -f 002_projections.sql

CREATE TABLE IF NOT EXISTS esgen_projections (
    name            text        PRIMARY KEY,
    -- The partition layout in force. A worker started with another count switches the
    -- layout (carrying every position over); workers of the old layout are fenced off.
    partition_count integer     NOT NULL CHECK (partition_count > 0),
    generation      bigint      NOT NULL DEFAULT 1 CHECK (generation > 0),
    previous_count  integer,
    counts_used     integer[]   NOT NULL DEFAULT '{}',
    changed_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS esgen_checkpoints (
    projection          text        NOT NULL REFERENCES esgen_projections (name) ON DELETE CASCADE,
    generation          bigint      NOT NULL,
    partition_key       integer     NOT NULL CHECK (partition_key >= 0),
    partition_count     integer     NOT NULL CHECK (partition_count > 0),
    -- Last event handled, in commit-safe order.
    last_transaction_id xid8        NOT NULL DEFAULT '0'::xid8,
    last_position       bigint      NOT NULL DEFAULT 0,
    events_handled      bigint      NOT NULL DEFAULT 0,
    -- A retired checkpoint belongs to an earlier layout: it no longer moves, and events at
    -- or before it in its old partition count as handled.
    retired             boolean     NOT NULL DEFAULT false,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, generation, partition_key),
    CHECK (partition_key < partition_count)
);
