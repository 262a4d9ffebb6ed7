package eventstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/internal/pgtest"
)

// combinePool is a pool of 16 connections whose single-event appends run at most
// slots statements at once.
func combinePool(t *testing.T, slots int) (*pgxpool.Pool, *notifier) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	n := notifierOf(pool)
	n.slots = slots
	return pool, n
}

// A model test of combined appends: 12 writers append single events to 5 aggregates
// with Any, NoStream and exact versions (some right, some stale) through one pool
// whose appends share one statement slot, so most run combined. Against the reference
// (each aggregate a list of the appends that succeeded): every aggregate's versions are
// 1..n with no gap or repeat, each success is at the version its expectation allowed,
// every stored event is a success with the position and version it was told, every
// failure is a concurrency error that stored nothing, Any never fails, heads match, and
// each aggregate's events in commit order (transaction id, position) are in version
// order, as readers need.
func TestCombinedAppendsModel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, n := combinePool(t, 1)

	const writers, perWriter, aggregates = 12, 120, 5
	type success struct {
		id       uuid.UUID
		expected ExpectedVersion
		version  int64
		position int64
	}
	var (
		mu      sync.Mutex
		ok      = map[string][]success{}
		known   = map[string]int64{} // the newest version a writer saw: guesses go stale
		failed  = map[uuid.UUID]bool{}
		wg      sync.WaitGroup
		errc    = make(chan error, writers)
		anyFail int
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range perWriter {
				agg := fmt.Sprintf("m-%d", rng.IntN(aggregates))
				var expected ExpectedVersion
				switch r := rng.IntN(10); {
				case r < 5:
					expected = Any
				case r < 7:
					expected = NoStream
				default:
					mu.Lock()
					v := known[agg]
					mu.Unlock()
					if v == 0 {
						expected = NoStream
					} else {
						expected = Exact(v)
					}
				}
				id := uuid.New()
				res, err := Append(ctx, pool, "Model", agg, expected, EventData{ID: id, Type: "Happened", Payload: []byte(`{}`)})
				mu.Lock()
				switch {
				case err == nil:
					ok[agg] = append(ok[agg], success{id: id, expected: expected, version: res.Version, position: res.Positions[0]})
					known[agg] = max(known[agg], res.Version)
				case errors.Is(err, ErrConcurrency) && expected != Any:
					failed[id] = true
				default:
					anyFail++
					mu.Unlock()
					errc <- fmt.Errorf("append %s %s: %w", agg, expected, err)
					return
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if anyFail > 0 {
		t.FailNow()
	}

	stored := map[uuid.UUID][3]int64{} // id → version, position, rank in commit order within its aggregate
	rows, err := pool.Query(ctx, `SELECT event_id, aggregate_id, aggregate_version, global_position
		FROM esgen_events ORDER BY aggregate_id, transaction_id, global_position`)
	if err != nil {
		t.Fatal(err)
	}
	lastVersion := map[string]int64{}
	for rows.Next() {
		var (
			id             uuid.UUID
			agg            string
			version, where int64
		)
		if err := rows.Scan(&id, &agg, &version, &where); err != nil {
			t.Fatal(err)
		}
		if version != lastVersion[agg]+1 {
			t.Errorf("%s: version %d follows version %d in commit order", agg, version, lastVersion[agg])
		}
		lastVersion[agg] = version
		stored[id] = [3]int64{version, where}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	total := 0
	for agg, list := range ok {
		total += len(list)
		seen := map[int64]bool{}
		for _, s := range list {
			if seen[s.version] {
				t.Errorf("%s: version %d given to two appends", agg, s.version)
			}
			seen[s.version] = true
			switch {
			case s.expected == NoStream && s.version != 1:
				t.Errorf("%s: NoStream append got version %d", agg, s.version)
			case s.expected > 0 && s.version != int64(s.expected)+1:
				t.Errorf("%s: append expecting %d got version %d", agg, s.expected, s.version)
			}
			got, found := stored[s.id]
			if !found {
				t.Errorf("%s: event %s reported appended at version %d is not stored", agg, s.id, s.version)
				continue
			}
			if got[0] != s.version || got[1] != s.position {
				t.Errorf("%s: event %s stored at version %d position %d, reported %d / %d", agg, s.id, got[0], got[1], s.version, s.position)
			}
		}
		for v := int64(1); v <= int64(len(list)); v++ {
			if !seen[v] {
				t.Errorf("%s: version %d missing (%d appends succeeded)", agg, v, len(list))
			}
		}
		var head int64
		if err := pool.QueryRow(ctx, `SELECT version FROM esgen_aggregate_heads WHERE aggregate_type = 'Model' AND aggregate_id = $1`, agg).Scan(&head); err != nil {
			t.Fatal(err)
		}
		if head != int64(len(list)) {
			t.Errorf("%s: head at %d, %d appends succeeded", agg, head, len(list))
		}
	}
	for id := range failed {
		if _, found := stored[id]; found {
			t.Errorf("event %s of a failed append is stored", id)
		}
	}
	if len(stored) != total {
		t.Errorf("%d events stored, %d appends succeeded", len(stored), total)
	}
	if c := n.combined.Load(); c == 0 {
		t.Errorf("no append ran combined (%d succeeded, %d failed)", total, len(failed))
	} else {
		t.Logf("%d appends succeeded (%d combined), %d refused", total, c, len(failed))
	}
}

// holdSlot takes n's only slot and waits until k appends wait for it; release lets
// the oldest lead them all as one batch.
func holdSlot(t *testing.T, n *notifier, k int) (release func()) {
	t.Helper()
	n.cmu.Lock()
	n.running = n.slots
	n.cmu.Unlock()
	return func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			n.cmu.Lock()
			waiting := len(n.queue)
			n.cmu.Unlock()
			if waiting == k {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d appends waiting, want %d", waiting, k)
			}
			time.Sleep(time.Millisecond)
		}
		n.handOver()
	}
}

type combinedResult struct {
	res AppendResult
	err error
}

// One batch of five appends: two well formed, one at a stale version, one whose
// aggregate's lock another transaction holds, and one whose event id is already
// stored. The statement fails on the duplicate id and writes nothing; each append
// then runs alone: the two and the locked one (once the lock is released) are
// appended, the stale one gets a concurrency error with the actual version, the
// duplicate gets the unique violation.
func TestCombinedBatchWithFailuresRunsEachAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, n := combinePool(t, 1)
	dup := uuid.New()
	for _, agg := range []string{"stale", "locked"} {
		if _, err := Append(ctx, pool, "Batch", agg, NoStream, EventData{Type: "Made", Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Append(ctx, pool, "Batch", "first", NoStream, EventData{ID: dup, Type: "Made", Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('Batch/locked', 0))`); err != nil {
		t.Fatal(err)
	}

	appends := []struct {
		agg      string
		expected ExpectedVersion
		id       uuid.UUID
	}{
		{"a", Any, uuid.New()},
		{"b", NoStream, uuid.New()},
		{"stale", Exact(3), uuid.New()},
		{"locked", Exact(1), uuid.New()},
		{"second", Any, dup},
	}
	release := holdSlot(t, n, len(appends))
	results := make([]combinedResult, len(appends))
	var wg sync.WaitGroup
	for i, a := range appends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := Append(ctx, pool, "Batch", a.agg, a.expected, EventData{ID: a.id, Type: "Made", Payload: []byte(`{}`)})
			results[i] = combinedResult{res, err}
		}()
	}
	release()
	// The locked append waits for the lock in its run alone; the others are done.
	time.Sleep(200 * time.Millisecond)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	for i, want := range []int64{1, 1, -1, 2, -1} {
		r := results[i]
		if want > 0 {
			if r.err != nil || r.res.Version != want {
				t.Errorf("%s: version %d, err %v; want version %d", appends[i].agg, r.res.Version, r.err, want)
			}
		}
	}
	var ce *ConcurrencyError
	if !errors.As(results[2].err, &ce) || ce.Actual != 1 {
		t.Errorf("stale append: err %v, want a concurrency error with actual version 1", results[2].err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(results[4].err, &pgErr) || pgErr.Code != "23505" {
		t.Errorf("duplicate event id: err %v, want a unique violation", results[4].err)
	}
	var count int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM esgen_events`).Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != 3+3 {
		t.Errorf("%d events stored, want 6 (3 before, a, b and locked)", count)
	}
	if c := n.combined.Load(); c != 0 {
		t.Errorf("%d appends reported written by the failed statement", c)
	}
}

// A batch that the statement writes in full shares one transaction; appends left
// out of it (a stale version) do not hold the others back.
func TestCombinedBatchSharesOneCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, n := combinePool(t, 1)
	if _, err := Append(ctx, pool, "Batch", "stale", NoStream, EventData{Type: "Made", Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	aggs := []string{"a", "b", "c", "d", "stale"}
	release := holdSlot(t, n, len(aggs))
	results := make([]combinedResult, len(aggs))
	var wg sync.WaitGroup
	for i, agg := range aggs {
		expected := Any
		if agg == "stale" {
			expected = NoStream
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := Append(ctx, pool, "Batch", agg, expected, EventData{Type: "Made", Payload: []byte(`{}`)})
			results[i] = combinedResult{res, err}
		}()
	}
	release()
	wg.Wait()
	for i, agg := range aggs[:4] {
		if results[i].err != nil {
			t.Fatalf("%s: %v", agg, results[i].err)
		}
	}
	if !errors.Is(results[4].err, ErrConcurrency) {
		t.Errorf("stale: err %v, want a concurrency error", results[4].err)
	}
	var txs int
	if err := pool.QueryRow(ctx, `SELECT count(DISTINCT transaction_id) FROM esgen_events WHERE aggregate_id IN ('a', 'b', 'c', 'd')`).Scan(&txs); err != nil {
		t.Fatal(err)
	}
	if txs != 1 {
		t.Errorf("the batch's four appends committed in %d transactions, want 1", txs)
	}
	if c := n.combined.Load(); c != 4 {
		t.Errorf("%d appends written combined, want 4", c)
	}
	// The positions reported are the stored ones.
	for i, agg := range aggs[:4] {
		var pos int64
		if err := pool.QueryRow(ctx, `SELECT global_position FROM esgen_events WHERE aggregate_id = $1`, agg).Scan(&pos); err != nil {
			t.Fatal(err)
		}
		if pos != results[i].res.Positions[0] {
			t.Errorf("%s: stored at %d, reported %d", agg, pos, results[i].res.Positions[0])
		}
	}
}

// An append cancelled while it waits for a slot returns at once with its context's
// error and writes nothing.
func TestCombinedAppendCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	pool, n := combinePool(t, 1)
	release := holdSlot(t, n, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Append(ctx, pool, "Batch", "x", Any, EventData{Type: "Made", Payload: []byte(`{}`)})
		done <- err
	}()
	for {
		n.cmu.Lock()
		k := len(n.queue)
		n.cmu.Unlock()
		if k == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	release()
	n.cmu.Lock()
	running, queued := n.running, len(n.queue)
	n.cmu.Unlock()
	if running != 0 || queued != 0 {
		t.Errorf("after the cancel: %d slots taken, %d waiting; want 0, 0", running, queued)
	}
	var count int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM esgen_events`).Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != 0 {
		t.Errorf("%d events stored by a cancelled append", count)
	}
}
