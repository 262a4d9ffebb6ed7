package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
)

// The runtime's own decoding of a batch gives the same events as eventstore.ReadAll
// (pgx's Scan into the generated row type), on both of its paths and with a layout
// in the partition filter.
func TestReadDecodesLikeReadAll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	corr := uuid.NullUUID{UUID: uuid.New(), Valid: true}
	for i := range 30 {
		ev := eventstore.EventData{Type: fmt.Sprintf("Type%d", i%3), Version: int32(1 + i%2),
			Payload: json.RawMessage(fmt.Sprintf(`{"n": %d, "s": "%s"}`, i, strings.Repeat("é", i)))}
		if i%2 == 0 {
			ev.Metadata = json.RawMessage(`{"who": "test"}`)
			ev.CorrelationID = corr
		}
		if i%3 == 0 {
			ev.CausationID = uuid.NullUUID{UUID: uuid.New(), Valid: true}
		}
		if _, err := eventstore.Append(ctx, pool, "Agg", fmt.Sprintf("a-%d", i%7), eventstore.Any, ev); err != nil {
			t.Fatal(err)
		}
	}
	for _, total := range []int{1, 3} {
		for key := range total {
			w := &worker{pool: pool, p: Projection{Name: "p"}, total: total, key: key}
			want, err := eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{Limit: 20, TotalPartitions: total, PartitionKey: key})
			if err != nil {
				t.Fatal(err)
			}
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got, err := w.read(ctx, tx, eventstore.Position{}, 20, false)
			if err != nil {
				t.Fatal(err)
			}
			// The slow path: pgx's Scan, as when the rows come in formats the fast
			// path does not decode.
			rows, err := tx.Query(ctx, `SELECT global_position, transaction_id, event_id, aggregate_type, aggregate_id, aggregate_version,
       event_type, event_version, partition_hash, payload, metadata, correlation_id, causation_id, created_at
FROM esgen_events WHERE $1::integer <= 1 OR partition_hash % $1::integer = $2::integer ORDER BY transaction_id, global_position LIMIT 20`, total, key)
			if err != nil {
				t.Fatal(err)
			}
			var slow []eventstore.Event
			for rows.Next() {
				var ev eventstore.Event
				if err := scanRow(rows, &ev); err != nil {
					t.Fatal(err)
				}
				slow = append(slow, ev)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			_ = tx.Rollback(ctx)
			if len(want) == 0 {
				t.Fatalf("partition %d/%d: no events to compare", key, total)
			}
			for name, got := range map[string][]eventstore.Event{"fast": got, "slow": slow} {
				if len(got) != len(want) {
					t.Fatalf("%s, partition %d/%d: %d events, want %d", name, key, total, len(got), len(want))
				}
				for i := range want {
					g, x := got[i], want[i]
					if !g.CreatedAt.Equal(x.CreatedAt) || g.CreatedAt.Location().String() != x.CreatedAt.Location().String() {
						t.Errorf("%s, event %d: created at %v, want %v", name, i, g.CreatedAt, x.CreatedAt)
					}
					g.CreatedAt, x.CreatedAt = time.Time{}, time.Time{}
					if !reflect.DeepEqual(g, x) {
						t.Errorf("%s, partition %d/%d, event %d:\n got %+v\nwant %+v", name, key, total, i, g, x)
					}
				}
			}
		}
	}
}

// A read on a connection that the server has ended (a shutdown, a restart) reports
// the connection's error, which the runtime retries, not a complaint about the
// missing columns of the result. The statement is prepared and cached first, as it is
// after the first batch, so that the read sends it without waiting for a description.
func TestReadReportsTheConnectionsError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	w := &worker{pool: pool, p: Projection{Name: "p"}, total: 2, key: 1}
	if _, err := w.read(ctx, tx, eventstore.Position{}, 20, false); err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1, 10000)`, pid); err != nil {
		t.Fatal(err)
	}
	_, err = w.read(ctx, tx, eventstore.Position{}, 20, false)
	if err == nil || strings.Contains(err.Error(), "columns") || !isTransient(err) {
		t.Fatalf("err = %v (transient: %v), want the connection's error, which is transient", err, isTransient(err))
	}
}
