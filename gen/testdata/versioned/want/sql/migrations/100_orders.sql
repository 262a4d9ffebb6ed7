-- The read model of the orders projection: its tables, which the handlers
-- (projections/orders) write through the batch's transaction, so that each change
-- commits with the projection's checkpoint. esgen generate wrote this file once: it
-- is yours.
--
-- esgen migrate applies it after esgen's own migrations and records it. Keep it safe
-- to apply more than once (IF NOT EXISTS), so that
--   psql -v ON_ERROR_STOP=1 -f 100_orders.sql
-- works too, and put later changes in new files numbered after it: a file that esgen
-- migrate has recorded is not applied again.
CREATE TABLE IF NOT EXISTS orders (
    aggregate_id text   PRIMARY KEY,
    version      bigint NOT NULL -- the aggregate version of the last event applied
);
