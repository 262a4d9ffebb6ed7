-- name: CreateProjection :execrows
-- Creates a projection with its first layout; no-op when it exists.
INSERT INTO esgen_projections (name, partition_count, generation, counts_used, event_types)
VALUES (@name::text, @partition_count::integer, 1, @counts_used::integer[], @event_types::text[])
ON CONFLICT (name) DO NOTHING;

-- name: LockProjection :one
-- The projection's layout, locked until the transaction ends (serializes layout changes).
SELECT name, partition_count, generation, previous_count, counts_used, event_types, changed_at, created_at
FROM esgen_projections WHERE name = @name::text FOR UPDATE;

-- name: GetProjection :one
SELECT name, partition_count, generation, previous_count, counts_used, event_types, changed_at, created_at
FROM esgen_projections WHERE name = @name::text;

-- name: SetProjectionEventTypes :exec
UPDATE esgen_projections SET event_types = @event_types::text[]
WHERE name = @name::text AND event_types IS DISTINCT FROM @event_types::text[];

-- name: InsertLayoutCheckpoints :exec
-- Inserts a checkpoint at the given cursor for every partition of a layout.
INSERT INTO esgen_checkpoints (projection, generation, partition_key, partition_count,
                               last_transaction_id, last_position, hole_transaction_ids, hole_positions)
SELECT @projection::text, @generation::bigint, k.k, @partition_count::integer,
       @last_transaction_id::xid8, @last_position::bigint, @hole_transaction_ids::xid8[], @hole_positions::bigint[]
FROM unnest(@partition_keys::integer[]) AS k(k)
ON CONFLICT (projection, generation, partition_key) DO NOTHING;

-- name: LockLayoutCheckpoints :many
-- The live checkpoints of a layout, locked: a batch in flight on one of them commits first.
SELECT projection, generation, partition_key, partition_count, last_transaction_id, last_position,
       events_handled, retired, updated_at, hole_transaction_ids, hole_positions
FROM esgen_checkpoints
WHERE projection = @projection::text AND generation = @generation::bigint AND NOT retired
ORDER BY partition_key
FOR UPDATE;

-- name: RetireLayout :execrows
UPDATE esgen_checkpoints SET retired = true
WHERE projection = @projection::text AND generation = @generation::bigint AND NOT retired;

-- name: SwitchLayout :exec
UPDATE esgen_projections
SET partition_count = @partition_count::integer,
    generation      = @generation::bigint,
    previous_count  = partition_count,
    counts_used     = CASE WHEN @partition_count::integer = ANY (counts_used) THEN counts_used
                           ELSE array_append(counts_used, @partition_count::integer) END,
    changed_at      = now()
WHERE name = @name::text;

-- name: DeleteRetiredGeneration :execrows
-- Deletes the retired checkpoints of one earlier layout (once every live checkpoint
-- has passed them: see eventstore.Passed).
DELETE FROM esgen_checkpoints
WHERE projection = @projection::text AND generation = @generation::bigint AND retired;

-- name: GetCheckpoint :one
-- A partition's checkpoint, not locked: a batch reads first and locks only when it has
-- work, so an idle poll takes no transaction id.
SELECT projection, generation, partition_key, partition_count, last_transaction_id, last_position,
       events_handled, retired, updated_at, hole_transaction_ids, hole_positions
FROM esgen_checkpoints
WHERE projection = @projection::text AND generation = @generation::bigint AND partition_key = @partition_key::integer;

-- name: LockCheckpoint :one
-- A partition's checkpoint, locked for the batch.
SELECT projection, generation, partition_key, partition_count, last_transaction_id, last_position,
       events_handled, retired, updated_at, hole_transaction_ids, hole_positions
FROM esgen_checkpoints
WHERE projection = @projection::text AND generation = @generation::bigint AND partition_key = @partition_key::integer
FOR UPDATE;

-- name: HasPartitionIndex :one
-- Whether esgen_events has a usable (valid and ready) index on
-- ((partition_hash % n), transaction_id, global_position) for this n, whatever its name.
SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_index i
    WHERE i.indrelid = 'esgen_events'::regclass AND i.indisvalid AND i.indisready AND i.indpred IS NULL
      AND pg_get_indexdef(i.indexrelid, 1, true) = '(partition_hash % ' || @total_partitions::integer || '::bigint)'
      AND pg_get_indexdef(i.indexrelid, 2, true) = 'transaction_id'
      AND pg_get_indexdef(i.indexrelid, 3, true) = 'global_position'
)::boolean AS has_index;

-- name: PartitionIndexes :many
-- The indexes on esgen_events named as the runtime names its partition indexes
-- (esgen_events_partitions_<count>), with whether each is usable.
SELECT c.relname::text AS name, (i.indisvalid AND i.indisready)::boolean AS usable
FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'esgen_events'::regclass AND c.relname ~ '^esgen_events_partitions_[0-9]+$'
ORDER BY c.relname;

-- name: PartitionCountGone :one
-- Whether a partition count was used by a projection (it is in its counts_used) and
-- no layout of any projection, live or retired, has it any more.
SELECT (NOT EXISTS (SELECT 1 FROM esgen_checkpoints WHERE partition_count = @partition_count::integer)
    AND EXISTS (SELECT 1 FROM esgen_projections WHERE @partition_count::integer = ANY (counts_used)))::boolean AS gone;

-- name: LatestRetired :one
-- The latest position of a retired checkpoint of the projection; no row when it has none.
SELECT last_transaction_id, last_position FROM esgen_checkpoints
WHERE projection = @projection::text AND retired
ORDER BY last_transaction_id DESC, last_position DESC
LIMIT 1;

-- name: AdvanceCheckpoint :execrows
-- Compare-and-set: moves a checkpoint (position and holes) only from the cursor this
-- worker read it at, only in the layout generation it runs, and only while that layout
-- is in force.
UPDATE esgen_checkpoints
SET last_transaction_id  = @new_transaction_id::xid8,
    last_position        = @new_position::bigint,
    hole_transaction_ids = @new_hole_transaction_ids::xid8[],
    hole_positions       = @new_hole_positions::bigint[],
    events_handled       = events_handled + @handled::bigint,
    updated_at           = now()
WHERE projection = @projection::text AND generation = @generation::bigint AND partition_key = @partition_key::integer
  AND NOT retired
  AND last_transaction_id = @old_transaction_id::xid8 AND last_position = @old_position::bigint
  AND hole_transaction_ids = @old_hole_transaction_ids::xid8[] AND hole_positions = @old_hole_positions::bigint[];

-- name: ListProjections :many
SELECT name, partition_count, generation, previous_count, counts_used, event_types, changed_at, created_at
FROM esgen_projections
WHERE (@name::text = '' OR name = @name::text)
ORDER BY name;

-- name: ListCheckpoints :many
SELECT projection, generation, partition_key, partition_count, last_transaction_id, last_position,
       events_handled, retired, updated_at, hole_transaction_ids, hole_positions
FROM esgen_checkpoints
WHERE projection = @projection::text
ORDER BY retired, generation DESC, partition_key;

-- name: DeleteProjection :execrows
-- Deletes a projection's layout and checkpoints (they cascade), so it rebuilds.
DELETE FROM esgen_projections WHERE name = @name::text;

-- The reads of esgen_events by position and by aggregate are rendered in Go, with the
-- conditions they share written once: internal/readsql.
