package readsql_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
	"github.com/esgen-dev/esgen/internal/readsql"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The statements agree with each other and with what they say, on a stream that a
// retired layout (2 partitions, uneven checkpoints) partly handled: a partition read
// with the count as parameters and as numbers, ReadAll, the lag and the count of
// handled events.
func TestStatementsAgree(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	const n = 200
	for i := range n {
		e := eventstore.EventData{Type: fmt.Sprintf("T%d", i%2), Payload: []byte(fmt.Sprintf(`{"i": %d}`, i))}
		if _, err := eventstore.Append(ctx, pool, "Agg", fmt.Sprintf("a-%d", i%50), eventstore.Any, e); err != nil {
			t.Fatal(err)
		}
	}
	var all []eventstore.Event
	pgtest.WaitFor(t, time.Minute, fmt.Sprintf("the %d events to be readable", n), func() bool {
		all = query(t, pool, readsql.ReadAll(readsql.Filter{}, 10*n))
		return len(all) >= n
	})
	if len(all) != n {
		t.Fatalf("%d events visible, want %d", len(all), n)
	}
	// Generation 1 had 2 partitions and is retired: partition 0 handled up to event 50,
	// partition 1 up to event 120.
	retired := [2]eventstore.Position{all[50].Position, all[120].Position}
	if _, err := pool.Exec(ctx, `INSERT INTO esgen_projections (name, partition_count, generation, counts_used, event_types)
		VALUES ('p', 3, 2, '{2,3}', '{}')`); err != nil {
		t.Fatal(err)
	}
	for k, pos := range retired {
		if _, err := pool.Exec(ctx, `INSERT INTO esgen_checkpoints (projection, generation, partition_key, partition_count, last_transaction_id, last_position, retired)
			VALUES ('p', 1, $1, 2, $2::text::xid8, $3, true)`, k, fmt.Sprint(pos.TransactionID), pos.GlobalPosition); err != nil {
			t.Fatal(err)
		}
	}
	handledByRetired := func(e eventstore.Event) bool {
		return !retired[e.PartitionHash%2].Less(e.Position)
	}
	after := all[20].Position
	var handledAfter int
	for _, e := range all[21:] {
		if handledByRetired(e) {
			handledAfter++
		}
	}
	var got int64
	st := readsql.CountHandledAfter(after.TransactionID, after.GlobalPosition, "p")
	if err := pool.QueryRow(ctx, st.SQL, st.Args...).Scan(&got); err != nil || got != int64(handledAfter) || got == 0 {
		t.Errorf("CountHandledAfter = %d (%v), want %d", got, err, handledAfter)
	}

	for _, types := range [][]string{nil, {"T1"}} {
		for _, total := range []int{1, 3} {
			for key := range total {
				f := readsql.Filter{AfterTransactionID: after.TransactionID, AfterPosition: after.GlobalPosition,
					TotalPartitions: total, PartitionKey: key, EventTypes: types}
				name := fmt.Sprintf("partition %d/%d, types %v", key, total, types)
				var want, wantSkipped []string
				for _, e := range all[21:] {
					if int(e.PartitionHash)%total == key && (types == nil || e.Type == types[0]) {
						want = append(want, e.EventID.String())
						if !handledByRetired(e) {
							wantSkipped = append(wantSkipped, e.EventID.String())
						}
					}
				}
				read := func(skip, literal bool) []string {
					return ids(query(t, pool, readsql.ReadPartition(readsql.PartitionRead{Filter: f, Limit: 10 * n, Projection: "p", SkipRetired: skip, Literal: literal})))
				}
				for what, got := range map[string][]string{
					"ReadAll":                         ids(query(t, pool, readsql.ReadAll(f, 10*n))),
					"ReadPartition":                   read(false, false),
					"ReadPartition, count as numbers": read(false, true),
					"ReadPartition, skip retired":     read(true, false),
					"ReadPartition, skip, as numbers": read(true, true),
				} {
					w := want
					if what == "ReadPartition, skip retired" || what == "ReadPartition, skip, as numbers" {
						w = wantSkipped
					}
					if !slices.Equal(got, w) {
						t.Errorf("%s: %s returned %d events, want %d", name, what, len(got), len(w))
					}
				}
				lag := readsql.PartitionLag(f, "p")
				if err := pool.QueryRow(ctx, lag.SQL, lag.Args...).Scan(&got); err != nil || got != int64(len(wantSkipped)) {
					t.Errorf("%s: lag %d (%v), want %d", name, got, err, len(wantSkipped))
				}
			}
		}
	}
	// The limit holds; a read goes on after the last event of the one before.
	first := query(t, pool, readsql.ReadAll(readsql.Filter{}, 7))
	next := query(t, pool, readsql.ReadAll(readsql.Filter{AfterTransactionID: first[6].Position.TransactionID, AfterPosition: first[6].Position.GlobalPosition}, 7))
	if got := ids(append(first, next...)); !slices.Equal(got, ids(all[:14])) {
		t.Errorf("two reads of 7: %v, want %v", got, ids(all[:14]))
	}
	agg := query(t, pool, readsql.ReadAggregate("Agg", "a-3", 2, 3))
	if len(agg) != 2 || agg[0].AggregateVersion != 2 || agg[1].AggregateVersion != 3 || agg[0].AggregateID != "a-3" {
		t.Errorf("ReadAggregate a-3 2..3: %+v", agg)
	}
}

func query(t *testing.T, pool *pgxpool.Pool, st readsql.Statement) []eventstore.Event {
	t.Helper()
	rows, err := pool.Query(context.Background(), st.SQL, st.Args...)
	if err != nil {
		t.Fatalf("%s: %v", st.SQL, err)
	}
	evs, err := eventstore.ScanEvents(rows, nil)
	if err != nil {
		t.Fatalf("%s: %v", st.SQL, err)
	}
	return evs
}

func ids(evs []eventstore.Event) []string {
	out := []string{}
	for _, e := range evs {
		out = append(out, e.EventID.String())
	}
	return out
}
