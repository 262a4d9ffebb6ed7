package projection

// readIndexedSQL is ReadPartition (sql/queries/projection.sql) with the partition count
// and key written into the text as numbers. Only then can PostgreSQL use an index on
// (partition_hash % n) for every execution: the generic plan of a prepared statement
// with the count as a parameter cannot match it. The rest stays parameterized.
const readIndexedSQL = `SELECT e.global_position, e.transaction_id, e.event_id, e.aggregate_type, e.aggregate_id, e.aggregate_version,
       e.event_type, e.event_version, e.partition_hash, e.payload, e.metadata, e.correlation_id, e.causation_id, e.created_at
FROM esgen_events e
WHERE (e.transaction_id, e.global_position) > ($1::xid8, $2::bigint)
  AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
  AND e.partition_hash %% %d = %d
  AND (cardinality($3::text[]) = 0 OR e.event_type = ANY ($3::text[]))
  AND (NOT $4::boolean OR NOT EXISTS (
      SELECT 1 FROM esgen_checkpoints r
      WHERE r.projection = $5::text AND r.retired
        AND r.partition_key = e.partition_hash %% r.partition_count
        AND (e.transaction_id, e.global_position) <= (r.last_transaction_id, r.last_position)))
ORDER BY e.transaction_id, e.global_position
LIMIT $6::integer`
