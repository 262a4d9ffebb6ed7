package bench

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/esgen-dev/esgen/eventstore"
)

// eventsPerAggregate is the shape of the preloaded stream: n events over n/10
// aggregates, event i going to aggregate i mod (n/10).
const eventsPerAggregate = 10

// loadChunk is the number of events per loading statement (and transaction), so the
// stream spans many transaction ids as a real one does.
const loadChunk = 50_000

// loadStream fills esgen_events with about n events (rounded down to a multiple of
// eventsPerAggregate) and returns how many. The aggregate ids and their FNV-1a hashes
// (computed by eventstore.Hash) go in by COPY; the events are made by INSERT … SELECT
// in chunks of whole aggregates, each chunk one transaction with its aggregates
// interleaved, so the stream spans many transaction ids and each aggregate's versions
// grow with its positions whatever order the chunks commit in. Two loaders run at once.
// Unless keepIndexes is set, the secondary indexes and unique constraints of
// esgen_events are dropped for the load and built again afterwards, from their own
// definitions, which is faster than maintaining them row by row (and impossible while
// another transaction that wrote to esgen_events is open). The table is vacuumed and
// analyzed afterwards, so every reader finds hint bits set and the visibility map
// current.
func loadStream(ctx context.Context, pool *pgxpool.Pool, n int, keepIndexes bool) (int, error) {
	aggs := max(n/eventsPerAggregate, 1)
	if _, err := pool.Exec(ctx, `CREATE TABLE esgen_bench_aggregates (idx integer PRIMARY KEY, id text NOT NULL, hash bigint NOT NULL)`); err != nil {
		return 0, fmt.Errorf("load: %w", err)
	}
	rows := make([][]any, aggs)
	for i := range rows {
		id := "acct-" + strconv.Itoa(i)
		rows[i] = []any{int32(i), id, int64(eventstore.Hash(id))}
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"esgen_bench_aggregates"}, []string{"idx", "id", "hash"}, pgx.CopyFromRows(rows)); err != nil {
		return 0, fmt.Errorf("load aggregates: %w", err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE esgen_bench_aggregates`); err != nil {
		return 0, fmt.Errorf("load: %w", err)
	}
	restore := func() error { return nil }
	if !keepIndexes {
		var err error
		if restore, err = dropSecondaryIndexes(ctx, pool); err != nil {
			return 0, err
		}
	}
	const chunkAggs = loadChunk / eventsPerAggregate
	chunks := make(chan [2]int)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(chunks)
		for lo := 0; lo < aggs; lo += chunkAggs {
			select {
			case chunks <- [2]int{lo, min(lo+chunkAggs, aggs) - 1}:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range 2 {
		g.Go(func() error {
			for c := range chunks {
				// ORDER BY hands rows to the identity column version by version.
				_, err := pool.Exec(gctx, `
INSERT INTO esgen_events (event_id, aggregate_type, aggregate_id, aggregate_version, event_type,
                          event_version, partition_hash, payload, metadata)
SELECT gen_random_uuid(), 'Account', a.id, v,
       (ARRAY['MoneyDeposited', 'MoneyWithdrawn', 'AddressChanged'])[(a.idx + v) % 3 + 1], 1, a.hash,
       jsonb_build_object('amount', 100 + (a.idx * 7 + v) % 1000, 'currency', 'EUR', 'note', 'benchmark event'), '{}'
FROM esgen_bench_aggregates a CROSS JOIN generate_series(1, $3::integer) AS v
WHERE a.idx BETWEEN $1 AND $2
ORDER BY v, a.idx`, c[0], c[1], eventsPerAggregate)
				if err != nil {
					return fmt.Errorf("load aggregates %d..%d: %w", c[0], c[1], err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	if err := restore(); err != nil {
		return 0, err
	}
	if _, err := pool.Exec(ctx, `
INSERT INTO esgen_aggregate_heads (aggregate_type, aggregate_id, version, last_transaction_id)
SELECT 'Account', aggregate_id, max(aggregate_version), max(transaction_id)
FROM esgen_events GROUP BY aggregate_id`); err != nil {
		return 0, fmt.Errorf("load heads: %w", err)
	}
	if _, err := pool.Exec(ctx, `DROP TABLE esgen_bench_aggregates`); err != nil {
		return 0, fmt.Errorf("load: %w", err)
	}
	if _, err := pool.Exec(ctx, `VACUUM (ANALYZE) esgen_events`); err != nil {
		return 0, fmt.Errorf("load: vacuum: %w", err)
	}
	_, _ = pool.Exec(ctx, `CHECKPOINT`)
	return aggs * eventsPerAggregate, nil
}

// dropSecondaryIndexes drops every index of esgen_events but the primary key, and
// returns a function that creates them again exactly as they were (unique
// constraints as constraints, other indexes from pg_get_indexdef).
func dropSecondaryIndexes(ctx context.Context, pool *pgxpool.Pool) (restore func() error, err error) {
	rows, err := pool.Query(ctx, `
SELECT c.conname, pg_get_constraintdef(c.oid), ''
FROM pg_constraint c WHERE c.conrelid = 'esgen_events'::regclass AND c.contype IN ('u', 'x')
UNION ALL
SELECT i.indexrelid::regclass::text, '', pg_get_indexdef(i.indexrelid)
FROM pg_index i WHERE i.indrelid = 'esgen_events'::regclass AND NOT i.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)`)
	if err != nil {
		return nil, fmt.Errorf("load: list indexes: %w", err)
	}
	type index struct{ name, constraintDef, indexDef string }
	idx, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (index, error) {
		var i index
		err := r.Scan(&i.name, &i.constraintDef, &i.indexDef)
		return i, err
	})
	if err != nil {
		return nil, fmt.Errorf("load: list indexes: %w", err)
	}
	for _, i := range idx {
		sql := `DROP INDEX ` + i.name
		if i.constraintDef != "" {
			sql = `ALTER TABLE esgen_events DROP CONSTRAINT ` + pgx.Identifier{i.name}.Sanitize()
		}
		if _, err := pool.Exec(ctx, sql); err != nil {
			return nil, fmt.Errorf("load: %s: %w", sql, err)
		}
	}
	return func() error {
		for _, i := range idx {
			sql := i.indexDef
			if i.constraintDef != "" {
				sql = `ALTER TABLE esgen_events ADD CONSTRAINT ` + pgx.Identifier{i.name}.Sanitize() + ` ` + i.constraintDef
			}
			if _, err := pool.Exec(ctx, sql); err != nil {
				return fmt.Errorf("load: %s: %w", sql, err)
			}
		}
		return nil
	}, nil
}
