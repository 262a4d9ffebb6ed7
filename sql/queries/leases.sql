-- Partition leases and worker registrations of auto-assigned projections
-- (sql/migrations/006_partition_leases.sql). Every time is the database's clock.

-- name: LockWorkers :exec
-- Serializes the registrations of a projection's workers (the check that static and
-- auto workers are not mixed), until the transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended(concat('esgen_workers:', sqlc.arg(projection)::text), 0));

-- name: RegisterWorker :exec
-- Inserts or renews a worker's registration.
INSERT INTO esgen_workers (projection, worker_id, mode, partition_keys, expires_at)
VALUES (@projection::text, @worker_id::text, @mode::text, @partition_keys::integer[], now() + @ttl::interval)
ON CONFLICT (projection, worker_id) DO UPDATE
SET mode = EXCLUDED.mode, partition_keys = EXCLUDED.partition_keys, heartbeat_at = now(), expires_at = EXCLUDED.expires_at,
    started_at = CASE WHEN esgen_workers.mode = EXCLUDED.mode THEN esgen_workers.started_at ELSE now() END;

-- name: LiveWorkersOfOtherMode :many
-- The live workers of a projection that run in the other mode than @mode.
SELECT worker_id, mode, partition_keys, expires_at FROM esgen_workers
WHERE projection = @projection::text AND mode <> @mode::text AND expires_at > now()
ORDER BY worker_id;

-- name: HeartbeatWorker :execrows
UPDATE esgen_workers SET heartbeat_at = now(), expires_at = now() + @ttl::interval
WHERE projection = @projection::text AND worker_id = @worker_id::text;

-- name: LiveAutoWorkers :many
-- The live auto workers of a projection, by id: the fair share is computed from them.
SELECT worker_id FROM esgen_workers
WHERE projection = @projection::text AND mode = 'auto' AND expires_at > now()
ORDER BY worker_id;

-- name: DeleteWorker :exec
DELETE FROM esgen_workers WHERE projection = @projection::text AND worker_id = @worker_id::text;

-- name: DeleteDeadWorkers :exec
-- Deletes registrations that expired long ago (a worker that was killed).
DELETE FROM esgen_workers WHERE projection = @projection::text AND expires_at < now() - interval '1 hour';

-- name: EnsureLeases :exec
-- Creates the leases of a layout (free) and deletes those of other layouts.
WITH dropped AS (
    DELETE FROM esgen_partition_leases
    WHERE projection = @projection::text AND generation <> @generation::bigint
)
INSERT INTO esgen_partition_leases (projection, generation, partition_key)
SELECT @projection::text, @generation::bigint, k
FROM generate_series(0, @last_key::integer) AS k
ON CONFLICT (projection, generation, partition_key) DO NOTHING;

-- name: ClaimLeases :many
-- Claims up to @max_claims leases of the layout that are free or expired, free ones
-- first, skipping those another transaction has locked. Each claim increments the
-- fencing token. previous_owner is the expired owner ('' for a free lease).
WITH c AS (
    SELECT projection, generation, partition_key, owner FROM esgen_partition_leases
    WHERE projection = @projection::text AND generation = @generation::bigint
      AND (owner IS NULL OR expires_at < now())
    ORDER BY owner IS NOT NULL, partition_key
    LIMIT @max_claims::integer
    FOR UPDATE SKIP LOCKED
)
UPDATE esgen_partition_leases l
SET owner = @worker_id::text, epoch = l.epoch + 1, claimed_at = now(),
    expires_at = now() + @ttl::interval
FROM c
WHERE l.projection = c.projection AND l.generation = c.generation AND l.partition_key = c.partition_key
RETURNING l.partition_key, l.epoch, coalesce(c.owner, '')::text AS previous_owner;

-- name: RenewLeases :many
-- Renews every lease the worker holds in the layout and returns them.
UPDATE esgen_partition_leases
SET expires_at = now() + @ttl::interval
WHERE projection = @projection::text AND generation = @generation::bigint AND owner = @worker_id::text
RETURNING partition_key, epoch;

-- name: ReleaseLease :one
-- Gives a lease back (only with the token it was claimed with) and wakes the other
-- workers.
WITH r AS (
    UPDATE esgen_partition_leases SET owner = NULL, expires_at = NULL
    WHERE projection = @projection::text AND generation = @generation::bigint AND partition_key = @partition_key::integer
      AND owner = @worker_id::text AND epoch = @epoch::bigint
    RETURNING partition_key
)
SELECT count(*)::bigint AS released FROM r, LATERAL (SELECT pg_notify('esgen_leases', @projection::text)) n;

-- name: HoldsLease :one
-- The fence of a batch of an auto-assigned partition, right before its checkpoint
-- moves: whether the worker still holds the lease with the token it claimed. The
-- lease stays locked until the batch commits, so it cannot be claimed in between.
SELECT EXISTS (
    SELECT 1 FROM esgen_partition_leases
    WHERE projection = @projection::text AND generation = @generation::bigint AND partition_key = @partition_key::integer
      AND owner = @worker_id::text AND epoch = @epoch::bigint
    FOR SHARE
)::boolean AS holds;

-- name: ListLeases :many
-- The leases of a projection's layout in force, for esgen status.
SELECT l.partition_key, coalesce(l.owner, '')::text AS owner, l.epoch, l.claimed_at, l.expires_at,
       (l.owner IS NOT NULL AND l.expires_at > now())::boolean AS live
FROM esgen_partition_leases l JOIN esgen_projections p ON p.name = l.projection AND p.generation = l.generation
WHERE l.projection = @projection::text
ORDER BY l.partition_key;

-- name: ListWorkers :many
SELECT worker_id, mode, partition_keys, started_at, heartbeat_at, expires_at, (expires_at > now())::boolean AS live
FROM esgen_workers WHERE projection = @projection::text
ORDER BY worker_id;

-- name: ReleaseWorkerLeases :exec
-- Gives back every lease of the worker (it stops, or it starts again with the same id).
UPDATE esgen_partition_leases SET owner = NULL, expires_at = NULL
WHERE projection = @projection::text AND owner = @worker_id::text;
