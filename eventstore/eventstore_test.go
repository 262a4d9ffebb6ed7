package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 20
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func ev(typ string, payload any) eventstore.EventData {
	b, err := json.Marshal(payload)
	if err != nil {
		panic(err)
	}
	return eventstore.EventData{Type: typ, Payload: b}
}

func countEvents(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM esgen_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAppendAndReadRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)

	meta := json.RawMessage(`{"user":"u1"}`)
	first := ev("AccountOpened", map[string]any{"owner": "ann"})
	first.Metadata = meta
	first.Version = 2
	res, err := eventstore.Append(ctx, pool, "Account", "acc-1", eventstore.NoStream,
		first, ev("MoneyDeposited", map[string]any{"amount": 10}), ev("MoneyDeposited", map[string]any{"amount": 5}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 3 || len(res.Positions) != 3 {
		t.Fatalf("result = %+v, want version 3 and 3 positions", res)
	}
	if !(res.Positions[0] < res.Positions[1] && res.Positions[1] < res.Positions[2]) {
		t.Fatalf("positions not increasing: %v", res.Positions)
	}

	got := readEventually(t, pool, eventstore.ReadOptions{}, 3)
	if len(got) != 3 {
		t.Fatalf("read %d events, want 3", len(got))
	}
	for i, e := range got {
		if e.AggregateType != "Account" || e.AggregateID != "acc-1" || e.AggregateVersion != int64(i+1) {
			t.Errorf("event %d envelope = %s %s v%d", i, e.AggregateType, e.AggregateID, e.AggregateVersion)
		}
		if e.Position.GlobalPosition != res.Positions[i] || e.Position.TransactionID == 0 {
			t.Errorf("event %d position = %v, want global %d and a transaction id", i, e.Position, res.Positions[i])
		}
		if e.PartitionHash != eventstore.Hash("acc-1") {
			t.Errorf("event %d partition hash = %d, want %d", i, e.PartitionHash, eventstore.Hash("acc-1"))
		}
		if e.CreatedAt.IsZero() || e.EventID == [16]byte{} {
			t.Errorf("event %d lacks created_at or id", i)
		}
	}
	if got[0].Type != "AccountOpened" || got[0].Version != 2 || string(got[0].Metadata) != `{"user": "u1"}` {
		t.Errorf("first event = type %s v%d meta %s", got[0].Type, got[0].Version, got[0].Metadata)
	}
	if got[1].Version != 1 || string(got[1].Metadata) != `{}` {
		t.Errorf("defaults: version %d metadata %s, want 1 and {}", got[1].Version, got[1].Metadata)
	}
	var p struct{ Amount int }
	if err := json.Unmarshal(got[2].Payload, &p); err != nil || p.Amount != 5 {
		t.Errorf("payload of third event = %s (%v)", got[2].Payload, err)
	}

	// Reading after the second event returns the third only; the limit is honoured.
	after := readEventually(t, pool, eventstore.ReadOptions{After: got[1].Position}, 1)
	if len(after) != 1 || after[0].AggregateVersion != 3 {
		t.Fatalf("read after second = %v", after)
	}
	limited := readEventually(t, pool, eventstore.ReadOptions{Limit: 2}, 2)
	if len(limited) != 2 {
		t.Fatalf("limit 2 returned %d events", len(limited))
	}
	// Type filter.
	deposits := readEventually(t, pool, eventstore.ReadOptions{EventTypes: []string{"MoneyDeposited"}}, 2)
	if len(deposits) != 2 || deposits[0].Type != "MoneyDeposited" || deposits[1].Type != "MoneyDeposited" {
		t.Fatalf("type filter returned %v", types(deposits))
	}

	// One aggregate's stream, by version range.
	agg, err := eventstore.ReadAggregate(ctx, pool, "Account", "acc-1", 2, 3)
	if err != nil || len(agg) != 2 || agg[0].AggregateVersion != 2 || agg[1].AggregateVersion != 3 {
		t.Fatalf("ReadAggregate 2..3 = %v, %v", agg, err)
	}
	all, err := eventstore.ReadAggregate(ctx, pool, "Account", "acc-1", 1, 0)
	if err != nil || len(all) != 3 {
		t.Fatalf("ReadAggregate 1.. = %d events, %v", len(all), err)
	}
	v, err := eventstore.AggregateVersion(ctx, pool, "Account", "acc-1")
	if err != nil || v != 3 {
		t.Fatalf("AggregateVersion = %d, %v", v, err)
	}
	v, err = eventstore.AggregateVersion(ctx, pool, "Account", "nope")
	if err != nil || v != 0 {
		t.Fatalf("AggregateVersion of a new aggregate = %d, %v", v, err)
	}
}

func TestExpectedVersionRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	e := ev("Happened", map[string]int{"n": 1})

	if _, err := eventstore.Append(ctx, pool, "Thing", "a", eventstore.Exact(1), e); !errors.Is(err, eventstore.ErrConcurrency) {
		t.Fatalf("Exact(1) on a new aggregate: err = %v, want a concurrency error", err)
	}
	if _, err := eventstore.Append(ctx, pool, "Thing", "a", eventstore.NoStream, e); err != nil {
		t.Fatalf("NoStream on a new aggregate: %v", err)
	}
	_, err := eventstore.Append(ctx, pool, "Thing", "a", eventstore.NoStream, e)
	var ce *eventstore.ConcurrencyError
	if !errors.As(err, &ce) {
		t.Fatalf("NoStream on an existing aggregate: err = %v, want *ConcurrencyError", err)
	}
	if ce.AggregateType != "Thing" || ce.AggregateID != "a" || ce.Expected != eventstore.NoStream || ce.Actual != 1 {
		t.Fatalf("ConcurrencyError = %+v", ce)
	}
	if msg := err.Error(); msg != `eventstore: concurrency conflict on Thing "a": expected version no stream, actual 1` {
		t.Fatalf("message = %q", msg)
	}
	if _, err := eventstore.Append(ctx, pool, "Thing", "a", eventstore.Exact(1), e, e); err != nil {
		t.Fatalf("Exact(1) at version 1: %v", err)
	}
	_, err = eventstore.Append(ctx, pool, "Thing", "a", eventstore.Exact(1), e)
	if !errors.As(err, &ce) || ce.Actual != 3 || ce.Expected != 1 {
		t.Fatalf("stale Exact(1): err = %v", err)
	}
	res, err := eventstore.Append(ctx, pool, "Thing", "a", eventstore.Any, e)
	if err != nil || res.Version != 4 {
		t.Fatalf("Any: %+v, %v", res, err)
	}
	// Another aggregate type with the same id is another aggregate.
	if _, err := eventstore.Append(ctx, pool, "Other", "a", eventstore.NoStream, e); err != nil {
		t.Fatalf("NoStream on Other/a: %v", err)
	}
	if n := countEvents(t, pool); n != 5 {
		t.Fatalf("%d events stored, want 5 (failed appends must write nothing)", n)
	}
}

func TestBadInputIsRejectedAndWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	good := ev("Happened", map[string]int{"n": 1})
	cases := []struct {
		name    string
		aggType string
		aggID   string
		exp     eventstore.ExpectedVersion
		events  []eventstore.EventData
		want    string
	}{
		{"empty type", "", "a", eventstore.Any, []eventstore.EventData{good}, "aggregate type is empty"},
		{"empty id", "Thing", "", eventstore.Any, []eventstore.EventData{good}, "aggregate id is empty"},
		{"no events", "Thing", "a", eventstore.Any, nil, "no events"},
		{"invalid json", "Thing", "a", eventstore.Any, []eventstore.EventData{good, {Type: "Bad", Payload: []byte(`{"n":`)}}, "event 1 (Bad) of Thing \"a\": payload is not valid JSON"},
		{"empty payload", "Thing", "a", eventstore.Any, []eventstore.EventData{{Type: "Bad"}}, "payload is not valid JSON"},
		{"invalid metadata", "Thing", "a", eventstore.Any, []eventstore.EventData{{Type: "Bad", Payload: []byte(`{}`), Metadata: []byte(`nope`)}}, "metadata is not valid JSON"},
		{"no event type", "Thing", "a", eventstore.Any, []eventstore.EventData{{Payload: []byte(`{}`)}}, "has no type"},
		{"negative expected version", "Thing", "a", eventstore.ExpectedVersion(-2), []eventstore.EventData{good}, "expected version -2"},
	}
	for _, c := range cases {
		_, err := eventstore.Append(ctx, pool, c.aggType, c.aggID, c.exp, c.events...)
		if !errors.Is(err, eventstore.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", c.name, err)
			continue
		}
		if !contains(err.Error(), c.want) {
			t.Errorf("%s: err = %q, want it to contain %q", c.name, err, c.want)
		}
	}
	if n := countEvents(t, pool); n != 0 {
		t.Fatalf("%d events stored after bad input, want 0", n)
	}
	var heads int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM esgen_aggregate_heads`).Scan(&heads); err != nil || heads != 0 {
		t.Fatalf("%d aggregate heads after bad input (%v), want 0", heads, err)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestConcurrentExactAppendsExactlyOneWins(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	if _, err := eventstore.Append(ctx, pool, "Thing", "x", eventstore.NoStream, ev("Created", map[string]int{})); err != nil {
		t.Fatal(err)
	}
	const writers = 12
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	start := make(chan struct{})
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := eventstore.Append(ctx, pool, "Thing", "x", eventstore.Exact(1), ev("Changed", map[string]int{"by": i}))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, eventstore.ErrConcurrency):
				conflicts++
			default:
				t.Errorf("writer %d: %v", i, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins != 1 || conflicts != writers-1 {
		t.Fatalf("wins=%d conflicts=%d, want 1 and %d", wins, conflicts, writers-1)
	}
	assertContiguous(t, pool, "Thing", "x", 2)
}

func TestConcurrentAnyAppendsAllSucceed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	const writers, perWriter = 10, 20
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perWriter {
				evs := []eventstore.EventData{ev("Tick", map[string]int{"w": i, "j": j})}
				if j%3 == 0 {
					evs = append(evs, ev("Tock", map[string]int{"w": i, "j": j}))
				}
				if _, err := eventstore.Append(ctx, pool, "Clock", "c", eventstore.Any, evs...); err != nil {
					t.Errorf("writer %d append %d: %v", i, j, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	want := int64(writers*perWriter + writers*7) // 7 of 20 appends carry two events
	assertContiguous(t, pool, "Clock", "c", want)
}

// assertContiguous checks versions 1..want exist once each and that the head agrees.
func assertContiguous(t *testing.T, pool *pgxpool.Pool, typ, id string, want int64) {
	t.Helper()
	evs, err := eventstore.ReadAggregate(context.Background(), pool, typ, id, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(evs)) != want {
		t.Fatalf("%s %s has %d events, want %d", typ, id, len(evs), want)
	}
	for i, e := range evs {
		if e.AggregateVersion != int64(i+1) {
			t.Fatalf("version at %d is %d: not contiguous", i, e.AggregateVersion)
		}
	}
	v, err := eventstore.AggregateVersion(context.Background(), pool, typ, id)
	if err != nil || v != want {
		t.Fatalf("head version %d (%v), want %d", v, err, want)
	}
}

// The late-commit gap: an event whose transaction commits after a younger one must not
// be skipped, and no reader may move past it while it is in flight.
func TestReaderWaitsForLateCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)

	txA, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer txA.Rollback(ctx)
	resA, err := eventstore.Append(ctx, txA, "Thing", "a", eventstore.Any, ev("A", map[string]int{}))
	if err != nil {
		t.Fatal(err)
	}
	resB, err := eventstore.Append(ctx, pool, "Thing", "b", eventstore.Any, ev("B", map[string]int{}))
	if err != nil {
		t.Fatal(err)
	}
	if resB.Positions[0] <= resA.Positions[0] {
		t.Fatalf("setup: B's position %d should be after A's %d", resB.Positions[0], resA.Positions[0])
	}
	got, err := eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("while A is open the reader returned %d events (%s first); it must wait behind A", len(got), got[0].Type)
	}
	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got = readEventually(t, pool, eventstore.ReadOptions{}, 2)
	if len(got) != 2 || got[0].Type != "A" || got[1].Type != "B" {
		t.Fatalf("after A commits the reader returned %v, want A then B", types(got))
	}
	rest, err := eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{After: got[1].Position})
	if err != nil || len(rest) != 0 {
		t.Fatalf("after the checkpoint: %v, %v; want nothing", types(rest), err)
	}
}

// readEventually reads until at least want events come back. The commit-safe filter
// waits behind every transaction with an id on the whole server, and tests running in
// parallel in other databases of the same server hold such transactions for a moment.
func readEventually(t *testing.T, pool *pgxpool.Pool, opts eventstore.ReadOptions, want int) []eventstore.Event {
	t.Helper()
	var got []eventstore.Event
	pgtest.WaitFor(t, time.Minute, fmt.Sprintf("%d readable events", want), func() bool {
		var err error
		if got, err = eventstore.ReadAll(context.Background(), pool, opts); err != nil {
			t.Fatal(err)
		}
		return len(got) >= want
	})
	return got
}

func types(evs []eventstore.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

// Many writers commit out of order while a reader follows the stream: the reader sees
// every committed event exactly once and each aggregate in version order.
func TestFollowerSeesEveryEventOnceUnderOutOfOrderCommits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	const writers, txPerWriter, aggregates = 8, 40, 12

	var wg sync.WaitGroup
	var committed sync.Map // event id -> struct{}
	var rolledBack int
	var rbMu sync.Mutex
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for i := range txPerWriter {
				tx, err := pool.Begin(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				agg := fmt.Sprintf("agg-%d", rng.IntN(aggregates))
				n := 1 + rng.IntN(3)
				evs := make([]eventstore.EventData, n)
				for k := range evs {
					evs[k] = ev("E", map[string]int{"w": w, "i": i, "k": k})
				}
				res, err := eventstore.Append(ctx, tx, "Agg", agg, eventstore.Any, evs...)
				if err != nil {
					tx.Rollback(ctx)
					t.Error(err)
					return
				}
				time.Sleep(time.Duration(rng.IntN(4000)) * time.Microsecond)
				if rng.IntN(10) == 0 { // some transactions roll back: their events never appear
					tx.Rollback(ctx)
					rbMu.Lock()
					rolledBack++
					rbMu.Unlock()
					continue
				}
				if err := tx.Commit(ctx); err != nil {
					t.Error(err)
					return
				}
				for _, p := range res.Positions {
					committed.Store(p, struct{}{})
				}
			}
		}()
	}
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()

	seen := map[int64]int{}
	lastVersion := map[string]int64{}
	var after eventstore.Position
	// Follow until the writers are done and every committed event was read. Readers
	// wait behind transactions of the whole server (other tests' too), so the end is
	// judged by the count, with a generous deadline.
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		batch, err := eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{After: after, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range batch {
			if !after.Less(e.Position) {
				t.Fatalf("position %v not after checkpoint %v", e.Position, after)
			}
			after = e.Position
			seen[e.Position.GlobalPosition]++
			if e.AggregateVersion <= lastVersion[e.AggregateID] {
				t.Fatalf("%s: version %d after %d", e.AggregateID, e.AggregateVersion, lastVersion[e.AggregateID])
			}
			lastVersion[e.AggregateID] = e.AggregateVersion
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-writersDone:
			if len(seen) >= syncMapLen(&committed) {
				deadline = time.Time{}
			}
		default:
		}
		time.Sleep(time.Millisecond)
	}
	if t.Failed() {
		return
	}
	total := 0
	committed.Range(func(k, _ any) bool {
		total++
		if seen[k.(int64)] != 1 {
			t.Errorf("event at position %d seen %d times", k, seen[k.(int64)])
		}
		return true
	})
	if len(seen) != total {
		t.Errorf("reader saw %d distinct events, %d were committed", len(seen), total)
	}
	// The heads agree with what the reader saw: versions are contiguous per aggregate.
	for agg, v := range lastVersion {
		assertContiguous(t, pool, "Agg", agg, v)
	}
	t.Logf("%d events committed by %d writers (%d transactions rolled back), each seen once", total, writers, rolledBack)
}

// A transaction that got its id before a younger one appended to the same aggregate
// must not append after it (its events would sort before their predecessors).
func TestOlderTransactionAppendingAfterYoungerIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)

	older, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer older.Rollback(ctx)
	// The older transaction writes elsewhere first, so it has a transaction id.
	if _, err := eventstore.Append(ctx, older, "Thing", "elsewhere", eventstore.Any, ev("E", map[string]int{})); err != nil {
		t.Fatal(err)
	}
	if _, err := eventstore.Append(ctx, pool, "Thing", "shared", eventstore.Any, ev("E", map[string]int{})); err != nil {
		t.Fatal(err)
	}
	_, err = eventstore.Append(ctx, older, "Thing", "shared", eventstore.Any, ev("E", map[string]int{}))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "40001" {
		t.Fatalf("err = %v, want a serialization failure (40001)", err)
	}
	older.Rollback(ctx)
	// Retried in a new transaction it succeeds.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := eventstore.Append(ctx, tx, "Thing", "shared", eventstore.Any, ev("E", map[string]int{}))
		return err
	})
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	assertContiguous(t, pool, "Thing", "shared", 2)
}

func TestFNV1aTestVectors(t *testing.T) {
	// Published FNV-1a 32-bit test vectors.
	vectors := map[string]uint32{
		"":       0x811c9dc5,
		"a":      0xe40c292c,
		"b":      0xe70c2de5,
		"foobar": 0xbf9cf968,
	}
	for in, want := range vectors {
		if got := eventstore.Hash(in); got != want {
			t.Errorf("Hash(%q) = %#x, want %#x", in, got, want)
		}
	}
	// And agreement with the standard library on many ids.
	for i := range 2000 {
		id := fmt.Sprintf("aggregate-%d-ü", i)
		h := fnv.New32a()
		h.Write([]byte(id))
		if got, want := eventstore.Hash(id), h.Sum32(); got != want {
			t.Fatalf("Hash(%q) = %d, hash/fnv says %d", id, got, want)
		}
	}
}

func TestCheckPartition(t *testing.T) {
	for _, c := range []struct {
		key, total int
		want       string
	}{
		{0, 1, ""}, {3, 4, ""},
		{4, 4, "partition key 4 is out of range: with 4 partitions the key must be 0..3"},
		{-1, 2, "partition key -1 is out of range: with 2 partitions the key must be 0..1"},
		{1, 1, "with 1 partition the only key is 0"},
		{0, 0, "total partitions must be at least 1, got 0"},
	} {
		err := eventstore.CheckPartition(c.key, c.total)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !contains(err.Error(), c.want)) {
			t.Errorf("CheckPartition(%d, %d) = %v, want %q", c.key, c.total, err, c.want)
		}
	}
}

func TestPartitionsSplitEvenlyAndExactlyOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	const aggregates, partitions = 10000, 4
	// One transaction per 500 aggregates.
	for start := 0; start < aggregates; start += 500 {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			for i := start; i < start+500; i++ {
				if _, err := eventstore.Append(ctx, tx, "Acct", fmt.Sprintf("acct-%d", i), eventstore.NoStream, ev("Opened", map[string]int{"i": i})); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Once an unpartitioned read sees every event, partition reads see them too.
	if all := readEventually(t, pool, eventstore.ReadOptions{Limit: aggregates + 1}, aggregates); len(all) != aggregates {
		t.Fatalf("%d events readable, want %d", len(all), aggregates)
	}
	owner := map[string]int{}
	counts := make([]int, partitions)
	for k := range partitions {
		var after eventstore.Position
		for {
			batch, err := eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{After: after, Limit: 5000, PartitionKey: k, TotalPartitions: partitions})
			if err != nil {
				t.Fatal(err)
			}
			if len(batch) == 0 {
				break
			}
			for _, e := range batch {
				if prev, dup := owner[e.AggregateID]; dup {
					t.Fatalf("%s read by partitions %d and %d", e.AggregateID, prev, k)
				}
				owner[e.AggregateID] = k
				if want := eventstore.PartitionOf(e.AggregateID, partitions); want != k {
					t.Fatalf("%s read by partition %d, FNV-1a says %d", e.AggregateID, k, want)
				}
				counts[k]++
			}
			after = batch[len(batch)-1].Position
		}
	}
	if len(owner) != aggregates {
		t.Fatalf("%d aggregates read over all partitions, want %d", len(owner), aggregates)
	}
	for k, c := range counts {
		dev := float64(c-aggregates/partitions) / float64(aggregates/partitions)
		if dev > 0.05 || dev < -0.05 {
			t.Errorf("partition %d has %d aggregates (%.1f%% off even)", k, c, dev*100)
		}
	}
	t.Logf("split over %d partitions: %v", partitions, counts)
	if _, err := eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{PartitionKey: 4, TotalPartitions: 4}); err == nil || !contains(err.Error(), "0..3") {
		t.Fatalf("reading partition 4 of 4: err = %v, want one naming 0..3", err)
	}
}

func syncMapLen(m *sync.Map) int {
	n := 0
	m.Range(func(_, _ any) bool { n++; return true })
	return n
}
