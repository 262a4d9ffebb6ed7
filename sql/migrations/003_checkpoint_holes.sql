-- esgen checkpoint holes: readers read past running transactions instead of waiting for
-- the oldest one, and remember each transaction they passed while it was running as a
-- hole of their checkpoint, with how far its rows are handled. A hole's rows are
-- handled at the first batch after its transaction ends. (See the eventstore package,
-- type Cursor.) Checkpoints written before this migration have no holes: they are
-- commit-safe positions, which stay valid.
-- Safe to apply more than once: psql -v ON_ERROR_STOP=1 -f 003_checkpoint_holes.sql

ALTER TABLE esgen_checkpoints
    ADD COLUMN IF NOT EXISTS hole_transaction_ids xid8[]   NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS hole_positions       bigint[] NOT NULL DEFAULT '{}';

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'esgen_checkpoints_holes_match') THEN
        ALTER TABLE esgen_checkpoints ADD CONSTRAINT esgen_checkpoints_holes_match
            CHECK (cardinality(hole_transaction_ids) = cardinality(hole_positions));
    END IF;
END
$$;
