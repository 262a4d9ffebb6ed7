-- esgen projections: one row per projection (its partition layout in force) and one
-- checkpoint per projection, layout generation and partition.
-- Safe to apply more than once: psql -v ON_ERROR_STOP=1 -f 002_projections.sql
--
-- Changing the partition count (see the projection package documentation): the first
-- worker started with a new count locks the projection row and the checkpoints of the
-- layout in force, retires them (retired = true, kept as they are), bumps the
-- generation and inserts a checkpoint for every partition of the new layout at the low
-- watermark W = the oldest checkpoint of the old layout. A new-layout partition then
-- reads after its checkpoint and skips the events that a retired layout already
-- handled. Workers of the old layout find their checkpoint retired and stop.

CREATE TABLE IF NOT EXISTS esgen_projections (
    name            text        PRIMARY KEY,
    -- The partition layout in force and its generation (the fencing token).
    partition_count integer     NOT NULL CHECK (partition_count > 0),
    generation      bigint      NOT NULL DEFAULT 1 CHECK (generation > 0),
    -- The count before the last change (NULL before any change).
    previous_count  integer,
    -- Every count this projection has used, in order: a worker started with an earlier
    -- count refuses to start unless told to switch back on purpose.
    counts_used     integer[]   NOT NULL DEFAULT '{}',
    -- The event types the projection handles as of its last start (empty: all); used
    -- by esgen status to count the lag.
    event_types     text[]      NOT NULL DEFAULT '{}',
    changed_at      timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- For databases migrated with an earlier draft of this file.
ALTER TABLE esgen_projections ADD COLUMN IF NOT EXISTS event_types text[] NOT NULL DEFAULT '{}';
ALTER TABLE esgen_projections ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();

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
    -- When the checkpoint last moved (or was created).
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, generation, partition_key),
    CHECK (partition_key < partition_count)
);

-- Readers of a new layout look up the retired checkpoints of their projection.
CREATE INDEX IF NOT EXISTS esgen_checkpoints_retired
    ON esgen_checkpoints (projection, partition_count, partition_key) WHERE retired;
