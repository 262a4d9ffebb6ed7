-- The example's read model, written by the balances projection in the same
-- transaction as its checkpoint. Not generated: esgen never touches this file.
-- Safe to apply more than once: psql -v ON_ERROR_STOP=1 -f 100_balances.sql
CREATE TABLE IF NOT EXISTS balances (
    account_id    text    PRIMARY KEY,
    owner         text    NOT NULL,
    balance       bigint  NOT NULL DEFAULT 0,
    version       bigint  NOT NULL, -- the last event of the account applied
    partition_key integer NOT NULL  -- the partition that applied it
);
-- One row per handled event, with the partition that handled it: an event handled
-- twice would violate the primary key.
CREATE TABLE IF NOT EXISTS handled_events (
    event_id         uuid        PRIMARY KEY,
    account_id       text        NOT NULL,
    version          bigint      NOT NULL,
    partition_key    integer     NOT NULL,
    total_partitions integer     NOT NULL,
    handled_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
