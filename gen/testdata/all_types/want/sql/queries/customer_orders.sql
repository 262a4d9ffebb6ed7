-- The queries of the customer_orders read model. esgen generate wrote this file once: it
-- is yours. Because esgen.yaml says sqlc: true, esgen generate runs sqlc after writing
-- its files, which turns each query into a typed method of package readmodel (see
-- sqlc.yaml). Handlers run them on the batch's transaction, so that their writes
-- commit with the checkpoint:
--   readmodel.New(tx).SaveCustomerOrders(ctx, readmodel.SaveCustomerOrdersParams{...})

-- name: SaveCustomerOrders :execrows
-- Records that the aggregate's event at version was applied; 0 rows when it is not the
-- next one (applied twice, or out of order).
INSERT INTO customer_orders (aggregate_id, version) VALUES (@aggregate_id, @version)
ON CONFLICT (aggregate_id) DO UPDATE SET version = excluded.version
WHERE customer_orders.version = excluded.version - 1;
