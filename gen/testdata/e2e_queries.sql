-- name: OpenAccount :exec
-- Inserts an account at its first version.
INSERT INTO balances (account_id, owner, currency, balance, events, version)
VALUES (@account_id, @owner, @currency, 0, 1, @version);

-- name: ApplyToBalance :execrows
-- Adds delta to the account's balance if the event is the account's next one: 0 rows
-- for an event seen twice or out of order.
UPDATE balances SET balance = balance + @delta, events = events + 1, version = @version
WHERE account_id = @account_id AND version + 1 = @version;
