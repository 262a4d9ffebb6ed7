package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
)

// newTestPool returns a pool on a new migrated database, closed when the test ends.
// It has room for reads ahead beside the batch in hand: a read dropped in the middle
// of its statement closes its connection, which counts against the pool until it is
// gone, and a pool at its limit reads nothing ahead.
func newTestPool(t *testing.T) *pgxpool.Pool {
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
	return pool
}

// appendBacklog appends n events of types Type0..Type2 to aggregates a-0 .. a-(aggs-1),
// 100 per call.
func appendBacklog(t *testing.T, pool *pgxpool.Pool, n, aggs int) {
	t.Helper()
	ctx := context.Background()
	for done := 0; done < n; {
		k := min(100, n-done)
		evs := make([]eventstore.EventData, k)
		for i := range evs {
			evs[i] = eventstore.EventData{Type: fmt.Sprintf("Type%d", (done+i)%3), Payload: json.RawMessage(fmt.Sprintf(`{"n": %d}`, done+i))}
		}
		if _, err := eventstore.Append(ctx, pool, "Agg", fmt.Sprintf("a-%d", (done/100)%aggs), eventstore.Any, evs...); err != nil {
			t.Fatal(err)
		}
		done += k
	}
}

// ReadBoundary predicts where a full read ends: the position of the read's last event,
// for every way a partition reads (its own rows or all, through the partition index or
// not, with an event type filter or not), and nothing when the read would not be full.
func TestReadBoundaryIsTheEndOfAFullRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newTestPool(t)
	appendBacklog(t, pool, 600, 7)
	if _, err := EnsurePartitionIndex(ctx, pool, 3); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitFor(t, 2*time.Minute, "the events to be commit-safe", func() bool {
		evs, err := eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs) == 600
	})
	checked, ends := 0, 0
	for _, total := range []int{1, 3} {
		for key := range total {
			for _, indexed := range []bool{false, true} {
				for _, types := range [][]string{nil, {"Type0", "Type2"}} {
					w := &worker{pool: pool, p: Projection{Name: "p", EventTypes: types}, total: total, key: key, indexed: indexed}
					for _, limit := range []int{1, 37, 150} {
						from := eventstore.Cursor{}
						for {
							tx, err := pool.Begin(ctx)
							if err != nil {
								t.Fatal(err)
							}
							predicted, ok, err := w.boundary(ctx, tx, from, limit, false)
							if err != nil {
								t.Fatal(err)
							}
							b, err := w.read(ctx, tx, from, limit, false, false)
							_ = tx.Rollback(ctx)
							if err != nil {
								t.Fatal(err)
							}
							what := fmt.Sprintf("partition %d/%d, indexed %v, types %v, limit %d, from %s", key, total, indexed, types, limit, from)
							full := len(b.Events) == limit
							if ok != full {
								t.Fatalf("%s: prediction %v, but the read has %d events", what, ok, len(b.Events))
							}
							checked++
							if !full {
								break
							}
							if end := b.Next(len(b.Events)); !predicted.Equal(end) {
								t.Fatalf("%s: predicted %s, the read ends at %s", what, predicted, end)
							}
							ends++
							from = predicted
						}
					}
				}
			}
		}
	}
	if ends < 100 {
		t.Errorf("only %d predictions compared (%d reads)", ends, checked)
	}
}

// handling is what a fast handler saw, for exactly-once checks: each call with the
// transaction it ran in, in call order.
type handling struct {
	mu    sync.Mutex
	txIDs map[pgx.Tx]string
	calls []handled
}

type handled struct {
	agg  string
	ver  int64
	xact string
}

func (h *handling) handler() Handler {
	h.txIDs = map[pgx.Tx]string{}
	return HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
		h.mu.Lock()
		xact, ok := h.txIDs[tx]
		h.mu.Unlock()
		if !ok {
			// Once per batch: which transaction it is, to keep only committed calls.
			if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text`).Scan(&xact); err != nil {
				return err
			}
			h.mu.Lock()
			h.txIDs[tx] = xact
			h.mu.Unlock()
		}
		h.mu.Lock()
		h.calls = append(h.calls, handled{agg: ev.AggregateID, ver: ev.AggregateVersion, xact: xact})
		h.mu.Unlock()
		return nil
	})
}

// runFast runs the projection "fast", not partitioned, with h's handler and batches
// of 5000 events (one per read), until finish: it waits up to d for every committed
// event to be handled, then stops the projection.
func (h *handling) runFast(t *testing.T, pool *pgxpool.Pool) (finish func(d time.Duration)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	handler := h.handler()
	go func() {
		done <- Run(ctx, pool, Projection{Name: "fast", Handler: handler},
			Config{Partitions: []int{0}, TotalPartitions: 1, BatchSize: 5000, PollInterval: 20 * time.Millisecond,
				RetryBackoff: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	}()
	return func(d time.Duration) {
		t.Helper()
		pgtest.WaitFor(t, d, "the projection to handle every event", func() bool {
			st, err := Status(context.Background(), pool, "fast")
			return err == nil && st.Lag == 0 && st.Partitions[0].EventsHandled > 0
		})
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// check returns an error unless the calls of committed transactions handled every
// version of every aggregate in versions once, in version order.
func (h *handling) check(ctx context.Context, pool *pgxpool.Pool, versions map[string]int64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	committed := map[string]bool{}
	for _, c := range h.calls {
		if _, seen := committed[c.xact]; seen {
			continue
		}
		var status *string
		if err := pool.QueryRow(ctx, `SELECT pg_xact_status($1::text::xid8)`, c.xact).Scan(&status); err != nil {
			return err
		}
		committed[c.xact] = status != nil && *status == "committed"
	}
	last := map[string]int64{}
	for _, c := range h.calls {
		if !committed[c.xact] {
			continue
		}
		if c.ver != last[c.agg]+1 {
			return fmt.Errorf("%s version %d handled after version %d", c.agg, c.ver, last[c.agg])
		}
		last[c.agg] = c.ver
	}
	for agg, v := range versions {
		if last[agg] != v {
			return fmt.Errorf("%s: handled up to version %d of %d", agg, last[agg], v)
		}
	}
	return nil
}

// catchUpWithWriters runs a projection that is not partitioned over a backlog of
// 50,000 events while 6 writers append more in transactions that commit out of
// order, until it has handled them all; it returns the check of what it handled.
func catchUpWithWriters(t *testing.T) error {
	t.Helper()
	ctx := context.Background()
	pool := newTestPool(t)
	const backlog, aggs = 50000, 40
	appendBacklog(t, pool, backlog, aggs)
	var h handling
	finish := h.runFast(t, pool)
	// Writers, on a pool of their own: each holds its transaction open for a while, so
	// that commits come out of order and reads see running transactions (holes).
	wpool, err := pgxpool.New(ctx, pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer wpool.Close()
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for j := range 15 {
				err := pgx.BeginFunc(ctx, wpool, func(tx pgx.Tx) error {
					evs := []eventstore.EventData{{Type: "Type1", Payload: json.RawMessage(fmt.Sprintf(`{"w": %d, "j": %d}`, i, j))}}
					if _, err := eventstore.Append(ctx, tx, "Agg", fmt.Sprintf("w-%d-%d", i, j%4), eventstore.Any, evs...); err != nil {
						return err
					}
					time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	type head struct {
		Agg string
		V   int64
	}
	rows, err := pool.Query(ctx, `SELECT aggregate_id, max(aggregate_version) FROM esgen_events GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	heads, err := pgx.CollectRows(rows, pgx.RowToStructByPos[head])
	if err != nil {
		t.Fatal(err)
	}
	versions := map[string]int64{}
	for _, h := range heads {
		versions[h.Agg] = h.V
	}
	finish(time.Minute)
	return h.check(ctx, pool, versions)
}

// A projection that is not partitioned reads two batches ahead while its handler is
// faster than its reads, the second at a predicted cursor; every event is handled once
// and in order whether the predictions are right or wrong (a read at a cursor the
// partition does not reach is dropped), and taking a read ahead without checking its
// cursor would be caught. Not parallel: it counts the predicted reads of the package.
func TestPredictedReadsHandleEveryEventOnce(t *testing.T) {
	reset := func() {
		predictedReads.started.Store(0)
		predictedReads.taken.Store(0)
		predictedReads.dropped.Store(0)
	}
	t.Cleanup(func() { plantedTrustPrediction, predictionSkew = false, 0 })

	// Predictions are made, and arrive in time to be taken, only while the handler
	// outruns the reads, which depends on the machine of the moment: a scenario runs
	// again (up to six times) until what it is about has happened; the handling must be
	// exact in every run.
	run := func(what string, happened func() bool) error {
		for try := 1; ; try++ {
			reset()
			err := catchUpWithWriters(t)
			if err != nil || happened() || try == 6 {
				t.Logf("%s: %d reads predicted, %d taken, %d dropped (run %d)", what,
					predictedReads.started.Load(), predictedReads.taken.Load(), predictedReads.dropped.Load(), try)
				return err
			}
		}
	}
	taken := func() bool { return predictedReads.taken.Load() > 0 }

	if err := run("right predictions", taken); err != nil {
		t.Fatalf("right predictions: %v", err)
	}
	if !taken() {
		t.Error("no read at a predicted cursor was taken")
	}

	// Every prediction one event short: every read at a predicted cursor is dropped.
	predictionSkew = 1
	if err := run("wrong predictions", func() bool { return predictedReads.dropped.Load() > 0 }); err != nil {
		t.Fatalf("wrong predictions: %v", err)
	}
	if predictedReads.taken.Load() != 0 || predictedReads.dropped.Load() == 0 {
		t.Error("wrong predictions: a read at a predicted cursor was taken, or none was dropped")
	}

	// The same, taking reads ahead without checking their cursor: the check must see it.
	plantedTrustPrediction = true
	err := run("planted misuse", taken)
	if err == nil {
		t.Fatalf("a read taken at the wrong cursor went unnoticed (%d taken)", predictedReads.taken.Load())
	}
	t.Logf("planted misuse caught: %v", err)
}

// A read ahead at a cursor other than the partition's is never taken, whether it was
// read at a predicted cursor or not; the one at the partition's cursor is.
func TestReadAheadIsTakenOnlyAtItsCursor(t *testing.T) {
	t.Cleanup(func() { plantedTrustPrediction, predictionSkew = false, 0 })
	ctx := context.Background()
	pool := newTestPool(t)
	appendBacklog(t, pool, 1000, 5)
	pgtest.WaitFor(t, 2*time.Minute, "the events to be commit-safe", func() bool {
		evs, err := eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{Limit: 2000})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs) == 1000
	})
	const limit = 100
	for _, planted := range []bool{false, true} {
		plantedTrustPrediction = false
		predictionSkew = 1 // every prediction one event short: never the next cursor
		w := &worker{pool: pool, p: Projection{Name: "p"}, total: 1, cfg: Config{Partitions: []int{0}}}
		defer w.dropReadAhead(ctx) // before the pool closes, on failures too
		var from eventstore.Cursor
		wrongTaken := false
		for range 5 {
			w.readsBehind = true // as if the handler waited for its reads
			w.startReadAhead(ctx, from, limit)
			if len(w.ahead) != 2 || !w.ahead[1].predicted {
				t.Fatalf("%d reads ahead, want the next and a predicted one", len(w.ahead))
			}
			<-w.ahead[1].known // the prediction is in, and wrong
			if w.ahead[1].from.Equal(from) {
				t.Fatal("the prediction is the cursor itself")
			}
			plantedTrustPrediction = planted
			tx, b, ok := w.takeReadAhead(ctx, from, limit)
			plantedTrustPrediction = false
			if !ok {
				t.Fatalf("no read ahead taken at %s", from)
			}
			_ = tx.Rollback(ctx)
			if !b.From().Equal(from) {
				wrongTaken = true
			}
			if len(w.ahead) != 1 {
				t.Fatalf("%d reads left ahead after a take, want the predicted one", len(w.ahead))
			}
			from = b.Next(len(b.Events))
			// The predicted read (at a cursor one event short of from) is dropped when
			// the next read starts at from, unless its cursor goes unchecked.
			plantedTrustPrediction = planted
			w.readsBehind = true
			w.startReadAhead(ctx, from, limit)
			plantedTrustPrediction = false
			if got := w.ahead[0].from; !got.Equal(from) {
				wrongTaken = true
			}
			w.dropReadAhead(ctx)
		}
		if wrongTaken != planted {
			t.Errorf("planted misuse %v: a read at another cursor taken: %v", planted, wrongTaken)
		}
	}
}

// The server restarts (every connection cut) while a projection that is not
// partitioned catches up with reads at predicted cursors in flight: it retries by
// itself and handles every event once, in order.
func TestPredictedReadsAcrossServerRestart(t *testing.T) {
	if _, err := pgtest.BinDir(); err != nil {
		t.Skipf("needs PostgreSQL server binaries for a private server (it restarts the server): %v", err)
	}
	ctx := context.Background()
	srv, err := pgtest.StartPrivate(ctx, pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	pool, err := pgxpool.New(ctx, pgtest.NewDatabaseOn(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	const aggs, versions = 1000, 300
	if _, err := pool.Exec(ctx, `INSERT INTO esgen_events (event_id, aggregate_type, aggregate_id, aggregate_version,
  event_type, event_version, partition_hash, payload, metadata)
SELECT gen_random_uuid(), 'Agg', 'b-' || a, v, 'Type0', 1, 0, '{}', '{}'
FROM generate_series(1, $1::integer) AS a CROSS JOIN generate_series(1, $2::integer) AS v
ORDER BY v, a`, aggs, versions); err != nil {
		t.Fatal(err)
	}
	var h handling
	finish := h.runFast(t, pool)
	calls := func() int {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.calls)
	}
	pgtest.WaitFor(t, time.Minute, "a fifth of the events handled", func() bool { return calls() >= aggs*versions/5 })
	at := calls()
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("server restarted after %d of %d events were handled (%d reads at predicted cursors so far)", at, aggs*versions, predictedReads.started.Load())
	finish(2 * time.Minute)
	want := map[string]int64{}
	for a := 1; a <= aggs; a++ {
		want[fmt.Sprintf("b-%d", a)] = versions
	}
	if err := h.check(ctx, pool, want); err != nil {
		t.Fatal(err)
	}
}
