package readsql_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
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
		all = query(t, pool, readsql.ReadAll(readsql.Filter{}, readsql.Holes{}, 10*n))
		return len(all) >= n
	})
	if len(all) != n {
		t.Fatalf("%d events visible, want %d", len(all), n)
	}
	// Generation 1 had 2 partitions and is retired: partition 0 handled up to event 50,
	// partition 1 up to event 120, except the transactions of two of its events after
	// 60, which were running when it passed them (holes: one handled, one not).
	hole := func(i int, handled bool) eventstore.Hole {
		h := eventstore.Hole{TransactionID: all[i].Position.TransactionID}
		if handled {
			h.Position = all[i].Position.GlobalPosition
		}
		return h
	}
	retired := [2]eventstore.Cursor{
		{Position: all[50].Position},
		{Position: all[120].Position},
	}
	for i := 60; i < 120 && len(retired[1].Holes) < 2; i++ {
		if all[i].PartitionHash%2 == 1 {
			retired[1].Holes = append(retired[1].Holes, hole(i, len(retired[1].Holes) == 1))
		}
	}
	if _, err := pool.Exec(ctx, `INSERT INTO esgen_projections (name, partition_count, generation, counts_used, event_types)
		VALUES ('p', 3, 2, '{2,3}', '{}')`); err != nil {
		t.Fatal(err)
	}
	for k, c := range retired {
		txs, positions := c.HoleArrays()
		if _, err := pool.Exec(ctx, `INSERT INTO esgen_checkpoints (projection, generation, partition_key, partition_count,
				last_transaction_id, last_position, hole_transaction_ids, hole_positions, retired)
			VALUES ('p', 1, $1, 2, $2::text::xid8, $3, $4::text[]::xid8[], $5, true)`,
			k, fmt.Sprint(c.TransactionID), c.GlobalPosition, strings.Fields(strings.Trim(fmt.Sprint(txs), "[]")), positions); err != nil {
			t.Fatal(err)
		}
	}
	handledByRetired := func(e eventstore.Event) bool {
		return retired[e.PartitionHash%2].Handled(e.Position)
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

	// The reader's own cursor is after event 20, with holes at events 5 (none of its
	// rows handled) and 10 (handled).
	cursor := eventstore.Cursor{Position: after, Holes: []eventstore.Hole{hole(5, false), hole(10, true)}}
	htxs, hpos := cursor.HoleArrays()
	holes := readsql.Holes{TransactionIDs: htxs, Positions: hpos}
	if !slices.ContainsFunc(all[21:], func(e eventstore.Event) bool {
		return e.PartitionHash%2 == 1 && !handledByRetired(e) && !retired[1].Position.Less(e.Position)
	}) {
		t.Fatal("no event of retired partition 1 is in a hole: the test does not check holes of retired checkpoints")
	}
	// Reads with the count as numbers go through the partition index (as the runtime
	// reads when it exists), hole rows included.
	if _, err := pool.Exec(ctx, `CREATE INDEX esgen_events_partitions_3 ON esgen_events ((partition_hash % 3), transaction_id, global_position)`); err != nil {
		t.Fatal(err)
	}
	for _, types := range [][]string{nil, {"T1"}} {
		for _, total := range []int{1, 3} {
			for key := range total {
				f := readsql.Filter{AfterTransactionID: after.TransactionID, AfterPosition: after.GlobalPosition,
					TotalPartitions: total, PartitionKey: key, EventTypes: types}
				name := fmt.Sprintf("partition %d/%d, types %v", key, total, types)
				var want, wantSkipped []string
				for _, e := range all {
					if !cursor.Handled(e.Position) && int(e.PartitionHash)%total == key && (types == nil || e.Type == types[0]) {
						want = append(want, e.EventID.String())
						if !handledByRetired(e) {
							wantSkipped = append(wantSkipped, e.EventID.String())
						}
					}
				}
				read := func(skip, literal bool) []string {
					return ids(query(t, pool, readsql.ReadPartition(readsql.PartitionRead{Filter: f, Holes: holes, Limit: 10 * n, Projection: "p", SkipRetired: skip, Literal: literal})))
				}
				for what, got := range map[string][]string{
					"ReadAll":                         ids(query(t, pool, readsql.ReadAll(f, holes, 10*n))),
					"ReadFrom":                        ids(query(t, pool, readsql.ReadFrom(f, holes, 10*n))),
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
				// ReadBoundary: the k-th event of a read from the position (no holes) is
				// where a read of k ends; none when fewer follow.
				for _, skip := range []bool{false, true} {
					for _, literal := range []bool{false, true} {
						r := readsql.PartitionRead{Filter: f, Limit: 10 * n, Projection: "p", SkipRetired: skip, Literal: literal}
						evs := query(t, pool, readsql.ReadPartition(r))
						for _, k := range []int{1, 3, len(evs), len(evs) + 1} {
							if k == 0 {
								continue
							}
							r.Limit = k
							st := readsql.ReadBoundary(r)
							var tx pgtype.Uint64
							var pos int64
							err := pool.QueryRow(ctx, st.SQL, st.Args...).Scan(&tx, &pos)
							switch {
							case k > len(evs):
								if !errors.Is(err, pgx.ErrNoRows) {
									t.Errorf("%s, skip %v, numbers %v: boundary of %d of %d events: %v, want no row", name, skip, literal, k, len(evs), err)
								}
							case err != nil:
								t.Errorf("%s, skip %v, numbers %v: boundary of %d: %v", name, skip, literal, k, err)
							case (eventstore.Position{TransactionID: tx.Uint64, GlobalPosition: pos}) != evs[k-1].Position:
								t.Errorf("%s, skip %v, numbers %v: boundary of %d at %d, want %s", name, skip, literal, k, pos, evs[k-1].Position)
							}
						}
					}
				}
				lag := readsql.PartitionLag(f, holes, "p")
				if err := pool.QueryRow(ctx, lag.SQL, lag.Args...).Scan(&got); err != nil || got != int64(len(wantSkipped)) {
					t.Errorf("%s: lag %d (%v), want %d", name, got, err, len(wantSkipped))
				}
			}
		}
	}
	// The limit holds; a read goes on after the last event of the one before.
	first := query(t, pool, readsql.ReadAll(readsql.Filter{}, readsql.Holes{}, 7))
	next := query(t, pool, readsql.ReadAll(readsql.Filter{AfterTransactionID: first[6].Position.TransactionID, AfterPosition: first[6].Position.GlobalPosition}, readsql.Holes{}, 7))
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
	if strings.Contains(st.SQL, "pg_current_snapshot() AS s") { // a gap-safe read: its first row is the snapshot
		b, err := eventstore.ScanBatch(rows, eventstore.Cursor{}, 1<<20)
		if err != nil {
			t.Fatalf("%s: %v", st.SQL, err)
		}
		return b.Events
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

// A gap-safe read renders only the parts it needs: no rows of holes for a cursor
// without holes, no head of the stream unless asked for. Every text returns the same
// events, and the head when asked for.
func TestGapSafeReadLeavesOutWhatItDoesNotNeed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	const n = 12
	for i := range n {
		if _, err := eventstore.Append(ctx, pool, "Agg", fmt.Sprintf("a-%d", i%3), eventstore.Any,
			eventstore.EventData{Type: "T", Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	all := query(t, pool, readsql.ReadFrom(readsql.Filter{}, readsql.Holes{}, 10*n))
	if len(all) != n {
		t.Fatalf("ReadFrom without holes: %d events, want %d", len(all), n)
	}
	last := all[n-1].Position
	// The cursor after event 8 with a hole at event 3's transaction, none of it handled.
	after := all[8].Position
	holes := readsql.Holes{TransactionIDs: []uint64{all[3].Position.TransactionID}, Positions: []int64{0}}
	want := append(ids(all[3:4]), ids(all[9:])...)
	for _, head := range []bool{false, true} {
		for _, withHoles := range []bool{false, true} {
			h, w := readsql.Holes{}, ids(all[9:])
			if withHoles {
				h, w = holes, want
			}
			st := readsql.ReadPartition(readsql.PartitionRead{
				Filter: readsql.Filter{AfterTransactionID: after.TransactionID, AfterPosition: after.GlobalPosition},
				Holes:  h, Limit: 10 * n, Projection: "p", Head: head,
			})
			name := fmt.Sprintf("head %t, holes %t", head, withHoles)
			if got := strings.Contains(st.SQL, "AS h(x, p)"); got != withHoles {
				t.Errorf("%s: the text reads holes: %t", name, got)
			}
			if got := strings.Contains(st.SQL, ") hd ON true"); got != head {
				t.Errorf("%s: the text reads the head: %t", name, got)
			}
			rows, err := pool.Query(ctx, st.SQL, st.Args...)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			b, err := eventstore.ScanBatch(rows, eventstore.Cursor{}, 10*n)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got := ids(b.Events); !slices.Equal(got, w) {
				t.Errorf("%s: %d events, want %d", name, len(got), len(w))
			}
			wantHead := eventstore.Position{}
			if head {
				wantHead = last
			}
			if got := b.Snapshot().Head; got != wantHead {
				t.Errorf("%s: head %s, want %s", name, got, wantHead)
			}
		}
	}
}

// The plan a partition read runs with (its generic plan, pinned: readsql.PinPlan),
// and the custom plans PostgreSQL would choose for the reads without filters, read
// from the cursor through an index, never the whole table: the commit-order index,
// or with the count as numbers the partition index of that count, with the partition
// and the cursor as its range (so only the partition's rows). Without statistics on
// the index's expression (a fresh index) as with them, at the start of the stream and
// near its end.
func TestPartitionReadPlans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO esgen_events (event_id, aggregate_type, aggregate_id, aggregate_version,
		event_type, event_version, partition_hash, payload, metadata)
		SELECT gen_random_uuid(), 'A', 'a' || (g % 5000), g / 5000 + 1, 'T' || (g % 3), 1, hashtext('a' || (g % 5000))::bigint & 4294967295, '{}', '{}'
		FROM generate_series(0, 49999) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ANALYZE esgen_events"); err != nil {
		t.Fatal(err)
	}
	var late pgtype.Uint64
	var latePos int64
	if err := conn.QueryRow(ctx, `SELECT transaction_id, global_position FROM esgen_events
		ORDER BY transaction_id, global_position OFFSET 45000 LIMIT 1`).Scan(&late, &latePos); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE INDEX esgen_events_partitions_4 ON esgen_events ((partition_hash % 4), transaction_id, global_position)"); err != nil {
		t.Fatal(err)
	}
	holes := readsql.Holes{TransactionIDs: []uint64{late.Uint64}, Positions: []int64{0}}
	shapes := []struct {
		name string
		r    readsql.PartitionRead
	}{
		{"1 partition", readsql.PartitionRead{}},
		{"1 partition, holes, head", readsql.PartitionRead{Holes: holes, Head: true}},
		{"4 partitions", readsql.PartitionRead{Filter: readsql.Filter{TotalPartitions: 4, PartitionKey: 1}}},
		{"4 partitions, types, skip retired, holes", readsql.PartitionRead{Filter: readsql.Filter{TotalPartitions: 4, PartitionKey: 1, EventTypes: []string{"T1"}}, SkipRetired: true, Holes: holes}},
		{"4 partitions, index", readsql.PartitionRead{Filter: readsql.Filter{TotalPartitions: 4, PartitionKey: 1}, Literal: true}},
		{"4 partitions, index, types, skip retired, holes", readsql.PartitionRead{Filter: readsql.Filter{TotalPartitions: 4, PartitionKey: 1, EventTypes: []string{"T1"}}, Literal: true, SkipRetired: true, Holes: holes}},
	}
	for _, analyzed := range []bool{false, true} {
		if analyzed {
			if _, err := conn.Exec(ctx, "ANALYZE esgen_events"); err != nil {
				t.Fatal(err)
			}
		}
		for _, mode := range []string{"force_custom_plan", "pinned"} {
			for _, at := range []eventstore.Position{{}, {TransactionID: late.Uint64, GlobalPosition: latePos}} {
				for _, sh := range shapes {
					if mode == "force_custom_plan" && (sh.r.SkipRetired || len(sh.r.EventTypes) > 0) {
						continue // a filter the planner may expect to leave fewer rows than the limit
					}
					r := sh.r
					r.AfterTransactionID, r.AfterPosition, r.Limit, r.Projection = at.TransactionID, at.GlobalPosition, 1000, "p"
					p := explainPrepared(t, conn, mode, readsql.ReadPartition(r))
					index := "esgen_events_commit_order"
					if r.Literal {
						index = "esgen_events_partitions_4"
					}
					name := fmt.Sprintf("%s (analyzed %t, %s, after %s)", sh.name, analyzed, mode, at)
					if !strings.Contains(p, "Index Scan using "+index+" on esgen_events e") || strings.Contains(p, "Seq Scan on esgen_events") ||
						strings.Contains(p, "Bitmap Heap Scan on esgen_events") || (r.Literal && strings.Contains(p, "Filter: ((partition_hash % ")) {
						t.Errorf("%s: the read does not run on %s from the cursor:\n%s", name, index, p)
					}
					if strings.Contains(p, "JIT") {
						t.Errorf("%s: the read would be compiled (JIT) on every execution:\n%s", name, p)
					}
					if len(r.Holes.TransactionIDs) == 0 && strings.Contains(p, "Sort") {
						t.Errorf("%s: the read sorts:\n%s", name, p)
					}
				}
			}
		}
	}
}

// explainPrepared prepares st and returns the plan of its execution in plan_cache_mode
// mode.
func explainPrepared(t *testing.T, conn *pgx.Conn, mode string, st readsql.Statement) string {
	t.Helper()
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	set := "SET LOCAL plan_cache_mode = " + mode
	if mode == "pinned" {
		set = readsql.PinPlan
	}
	for _, sql := range []string{"DEALLOCATE ALL", set, "PREPARE r AS " + st.SQL} {
		if _, err := tx.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	args := make([]string, len(st.Args))
	for i, a := range st.Args {
		switch v := a.(type) {
		case pgtype.Uint64:
			args[i] = fmt.Sprintf("'%d'", v.Uint64)
		case []pgtype.Uint64:
			xs := make([]string, len(v))
			for j, x := range v {
				xs[j] = fmt.Sprint(x.Uint64)
			}
			args[i] = "'{" + strings.Join(xs, ",") + "}'"
		case []int64:
			args[i] = "'{" + strings.Trim(strings.Join(strings.Fields(fmt.Sprint(v)), ","), "[]") + "}'"
		case []string:
			args[i] = "'{" + strings.Join(v, ",") + "}'"
		case string:
			args[i] = "'" + v + "'"
		default:
			args[i] = fmt.Sprint(v)
		}
	}
	rows, err := tx.Query(ctx, "EXPLAIN EXECUTE r("+strings.Join(args, ", ")+")", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	var plan strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	return plan.String()
}
