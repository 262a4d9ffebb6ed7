-- The demo's read model, written by the balances projection in the same transaction
-- as its checkpoint. The demo's own migration: applied after esgen's by the same
-- migrate.Up, and safe to apply more than once.
CREATE TABLE IF NOT EXISTS demo_balances (
    account_id     text   PRIMARY KEY,
    owner          text   NOT NULL,
    currency       text   NOT NULL,
    balance        bigint NOT NULL DEFAULT 0,
    version        bigint NOT NULL,           -- the last aggregate version applied
    partition_key  integer NOT NULL           -- the partition that handled it
);
-- One row per handled event: a duplicate would violate the primary key.
CREATE TABLE IF NOT EXISTS demo_handled_events (
    event_id       uuid    PRIMARY KEY,
    account_id     text    NOT NULL,
    version        bigint  NOT NULL,
    partition_key  integer NOT NULL
);
