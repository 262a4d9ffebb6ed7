-- esgen partition leases: workers started with --partition-key=auto share a
-- projection's partitions among themselves through these tables, without a leader.
-- Safe to apply more than once: psql -v ON_ERROR_STOP=1 -f 006_partition_leases.sql
--
-- Every worker of a projection has a row in esgen_workers that it renews (heartbeat):
-- auto workers count the live ones (expires_at in the future, by the database's
-- clock) to compute their fair share; a static worker (PARTITION_KEY=0, a list, all)
-- has one too, so that static and auto workers are never mixed on one projection.
--
-- esgen_partition_leases holds one lease per partition of the layout in force
-- (generation): its owner renews it while it runs the partition; once it expires (the
-- owner died) or is released (the owner stopped, or has more than its share), another
-- auto worker claims it. Every claim increments epoch, the fencing token: a batch
-- commits only while its worker still holds the lease with the epoch it claimed, and
-- the checkpoint's compare-and-set still decides every commit.

CREATE TABLE IF NOT EXISTS esgen_workers (
    projection   text        NOT NULL REFERENCES esgen_projections (name) ON DELETE CASCADE,
    worker_id    text        NOT NULL CHECK (worker_id <> ''),
    -- 'auto': its partitions are assigned through leases; 'static': it runs the
    -- partition keys it was given (partition_keys).
    mode         text        NOT NULL CHECK (mode IN ('auto', 'static')),
    partition_keys integer[] NOT NULL DEFAULT '{}',
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    -- The worker counts as dead after this (heartbeat_at + the lease time).
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (projection, worker_id)
);

CREATE TABLE IF NOT EXISTS esgen_partition_leases (
    projection    text        NOT NULL REFERENCES esgen_projections (name) ON DELETE CASCADE,
    generation    bigint      NOT NULL,
    partition_key integer     NOT NULL CHECK (partition_key >= 0),
    -- NULL: free to claim.
    owner         text,
    -- The fencing token: incremented by every claim.
    epoch         bigint      NOT NULL DEFAULT 0,
    claimed_at    timestamptz,
    -- Free to claim by another worker after this (NULL with owner NULL).
    expires_at    timestamptz,
    PRIMARY KEY (projection, generation, partition_key)
);
