-- The queries of the audit read model. esgen generate wrote this file once: it
-- is yours. Because esgen.yaml says sqlc: true, esgen generate runs sqlc after writing
-- its files, which turns each query into a typed method of package readmodel (see
-- sqlc.yaml). Handlers run them on the batch's transaction, so that their writes
-- commit with the checkpoint; queued, when the handler needs no result (RowsAffected),
-- so that the batch sends them all in one round trip:
--   readmodel.New(projection.Queue(tx)).SaveAudit(ctx, readmodel.SaveAuditParams{...})

-- name: SaveAudit :exec
-- Records the version of the aggregate's last event applied. The runtime hands each
-- event to the handlers once, in the aggregate's order.
INSERT INTO audit (aggregate_id, version) VALUES (@aggregate_id, @version)
ON CONFLICT (aggregate_id) DO UPDATE SET version = excluded.version;
