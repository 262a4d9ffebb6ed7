-- name: OpenAccount :exec
-- Inserts an account of the balances read model (sql/migrations/100_balances.sql) at
-- its first version.
INSERT INTO balances (account_id, owner, balance, version)
VALUES (@account_id, @owner, 0, @version);

-- name: ApplyToBalance :exec
-- Adds delta to the account's balance if the event is the account's next one. For an
-- event applied twice, or out of order, the new version is NULL, which the column
-- refuses: the statement fails, and with it the event.
UPDATE balances SET balance = balance + @delta,
    version = CASE WHEN version + 1 = @version THEN @version END
WHERE account_id = @account_id;
