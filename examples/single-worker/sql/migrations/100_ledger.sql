-- The example's read model, written by the ledger projection in the same transaction
-- as its checkpoint. Not generated: esgen never touches this file.
-- Safe to apply more than once: psql -v ON_ERROR_STOP=1 -f 100_ledger.sql
CREATE TABLE IF NOT EXISTS ledger_entries (
    line       bigint PRIMARY KEY,     -- 1, 2, 3, … in the order the projection applied the events
    event_id   uuid   NOT NULL UNIQUE, -- an event applied twice would violate this
    account_id text   NOT NULL,
    kind       text   NOT NULL,        -- opened, deposit, withdrawal
    amount     bigint NOT NULL,        -- signed: withdrawals are negative
    bank_total bigint NOT NULL         -- the money in all accounts after this line
);
