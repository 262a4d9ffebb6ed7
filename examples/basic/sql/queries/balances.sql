-- name: OpenAccount :exec
-- Inserts an account of the balances read model (sql/migrations/100_balances.sql) at
-- its first version.
INSERT INTO balances (account_id, owner, balance, version)
VALUES (@account_id, @owner, 0, @version);

-- name: ApplyToBalance :execrows
-- Adds delta to the account's balance if the event is the account's next one: 0 rows
-- for an event applied twice, or out of order.
UPDATE balances SET balance = balance + @delta, version = @version
WHERE account_id = @account_id AND version + 1 = @version;
