-- The read model of the orders projection (TestEndToEndLivingSpec writes it, with
-- "orders" replaced, for the shipping projection too).
CREATE TABLE IF NOT EXISTS orders (
    order_id text PRIMARY KEY,
    buyer    text   NOT NULL,
    amount   bigint NOT NULL,
    currency text,
    carrier  text
);
