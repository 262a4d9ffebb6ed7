package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
)

// A batch read selects the events eventstore.ReadAll selects for the partition, with
// the partition count and key as parameters and written into the statement (as with a
// partition index).
func TestReadSelectsLikeReadAll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newTestPool(t)
	for i := range 30 {
		ev := eventstore.EventData{Type: fmt.Sprintf("Type%d", i%3), Payload: json.RawMessage(fmt.Sprintf(`{"n": %d}`, i))}
		if _, err := eventstore.Append(ctx, pool, "Agg", fmt.Sprintf("a-%d", i%7), eventstore.Any, ev); err != nil {
			t.Fatal(err)
		}
	}
	// Commit-safe reads wait behind other tests' transactions on the server: compare
	// once all 30 events are readable, so that every read below sees the same events.
	pgtest.WaitFor(t, 2*time.Minute, "the 30 events to be readable", func() bool {
		evs, err := eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs) == 30
	})
	for _, total := range []int{1, 3} {
		for key := range total {
			b, err := eventstore.ReadFrom(ctx, pool, eventstore.Cursor{}, eventstore.ReadOptions{Limit: 20, TotalPartitions: total, PartitionKey: key})
			if err != nil {
				t.Fatal(err)
			}
			want := b.Events
			if len(want) == 0 {
				t.Fatalf("partition %d/%d: no events to compare", key, total)
			}
			for _, indexed := range []bool{false, true} {
				w := &worker{pool: pool, p: Projection{Name: "p", EventTypes: []string{"Type0", "Type1", "Type2"}}, total: total, key: key, indexed: indexed}
				tx, err := pool.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				b, err := w.read(ctx, tx, eventstore.Cursor{}, 20, true, false)
				got := b.Events
				_ = tx.Rollback(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) {
					t.Fatalf("partition %d/%d (indexed %v): %d events, want %d", key, total, indexed, len(got), len(want))
				}
				for i := range want {
					if !reflect.DeepEqual(got[i], want[i]) {
						t.Errorf("partition %d/%d (indexed %v), event %d:\n got %+v\nwant %+v", key, total, indexed, i, got[i], want[i])
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
	pool := newTestPool(t)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	w := &worker{pool: pool, p: Projection{Name: "p"}, total: 2, key: 1}
	if _, err := w.read(ctx, tx, eventstore.Cursor{}, 20, false, false); err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1, 10000)`, pid); err != nil {
		t.Fatal(err)
	}
	_, err = w.read(ctx, tx, eventstore.Cursor{}, 20, false, false)
	if err == nil || strings.Contains(err.Error(), "columns") || !isTransient(err) {
		t.Fatalf("err = %v (transient: %v), want the connection's error, which is transient", err, isTransient(err))
	}
}
