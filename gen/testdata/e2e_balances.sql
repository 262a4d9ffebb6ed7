-- The balances read model, kept by the balances projection.
CREATE TABLE IF NOT EXISTS balances (
    account_id text PRIMARY KEY,
    owner      text   NOT NULL,
    currency   text   NOT NULL,
    balance    bigint NOT NULL,
    events     bigint NOT NULL,
    version    bigint NOT NULL
);
