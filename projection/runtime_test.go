package projection_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projection"
)

// readModelHandler is the in-process twin of the test worker's handler.
func readModelHandler(fail func(ev *eventstore.Event) error) projection.Handler {
	return projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
		if fail != nil {
			if err := fail(ev); err != nil {
				return err
			}
		}
		part, ok := projection.CurrentPartition(ctx)
		if !ok {
			return errors.New("no partition in the handler's context")
		}
		var seq int64
		if err := tx.QueryRow(ctx, `INSERT INTO rm_seq (aggregate_id, n) VALUES ($1, 1)
			ON CONFLICT (aggregate_id) DO UPDATE SET n = rm_seq.n + 1 RETURNING n`, ev.AggregateID).Scan(&seq); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO rm_events (event_id, aggregate_id, aggregate_version, apply_seq,
			partition_key, total_partitions, generation, global_position, worker)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'test')`,
			ev.EventID, ev.AggregateID, ev.AggregateVersion, seq, part.Key, part.Total, part.Generation, ev.Position.GlobalPosition)
		return err
	})
}

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger(t testing.TB) (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// running is a Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func start(t testing.TB, pool *pgxpool.Pool, p projection.Projection, cfg projection.Config) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- projection.Run(ctx, pool, p, cfg) }()
	t.Cleanup(func() { r.cancel(); <-r.done })
	return r
}

func (r *running) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(time.Minute):
		t.Fatal("Run did not return within a minute of its context ending")
		return nil
	}
}

// appendN appends perAggregate events to each of aggregates new aggregates named
// prefix-0, prefix-1, …, round-robin, one transaction each, and waits until a
// commit-safe reader sees them all (other tests' transactions can hold readers back).
func appendN(t testing.TB, pool *pgxpool.Pool, prefix string, aggregates, perAggregate int) {
	t.Helper()
	for v := range perAggregate {
		for a := range aggregates {
			_, err := eventstore.Append(context.Background(), pool, "Counter", fmt.Sprintf("%s-%d", prefix, a), eventstore.Exact(int64(v)),
				eventstore.EventData{Type: "Tick", Payload: []byte(`{}`)})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	total := count(t, pool, "SELECT count(*) FROM esgen_events")
	waitFor(t, time.Minute, "appended events to become visible", func() bool {
		evs, err := eventstore.ReadAll(context.Background(), pool, eventstore.ReadOptions{Limit: int(total)})
		return err == nil && int64(len(evs)) == total
	})
}

// Several partitions in one process, concurrent out-of-order writers: every event
// once, in order, by the right partition (in-process, so -race covers the runtime).
func TestRunPartitionsInOneProcess(t *testing.T) {
	t.Parallel()
	_, pool := newReadModelDB(t)
	log, _ := testLogger(t)
	p := projection.Projection{Name: "rm", Partitioned: true, Handler: readModelHandler(nil)}
	r := start(t, pool, p, projection.Config{TotalPartitions: 3, BatchSize: 17, Logger: log, PollInterval: 200 * time.Millisecond})
	var w writers
	w.run(context.Background(), t, pool, 4, 1200, 60, time.Millisecond)
	waitApplied(t, pool, time.Minute, nil)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	n := checkReadModel(t, pool)
	st, err := projection.Status(context.Background(), pool, "rm")
	if err != nil {
		t.Fatal(err)
	}
	var handled int64
	for _, ps := range st.Partitions {
		handled += ps.EventsHandled
		if ps.Lag != 0 {
			t.Errorf("partition %d: lag %d after catching up", ps.Key, ps.Lag)
		}
	}
	if handled != n || st.PartitionCount != 3 || st.Generation != 1 || len(st.Partitions) != 3 {
		t.Errorf("status: %+v (handled %d of %d)", st, handled, n)
	}
}

func TestPollingOnlyDelivers(t *testing.T) {
	t.Parallel()
	_, pool := newReadModelDB(t)
	log, buf := testLogger(t)
	p := projection.Projection{Name: "rm", Handler: readModelHandler(nil)}
	r := start(t, pool, p, projection.Config{DisableNotify: true, PollInterval: 50 * time.Millisecond, Logger: log})
	appendN(t, pool, "agg", 5, 2)
	waitApplied(t, pool, 30*time.Second, nil)
	appendN(t, pool, "late", 1, 1) // after the worker went idle
	waitApplied(t, pool, 30*time.Second, nil)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	checkReadModel(t, pool)
	if strings.Contains(buf.String(), "listening for appends") {
		t.Error("DisableNotify: the runtime still listened")
	}
}

// A handler that fails a few times and then succeeds: the event is applied once and
// the partition goes on.
func TestHandlerRetriedThenSucceeds(t *testing.T) {
	t.Parallel()
	_, pool := newReadModelDB(t)
	appendN(t, pool, "agg", 4, 3)
	var target atomic.Value
	var fails atomic.Int32
	fail := func(ev *eventstore.Event) error {
		if ev.AggregateID == "agg-2" && ev.AggregateVersion == 2 && fails.Load() < 3 {
			fails.Add(1)
			target.Store(ev.EventID)
			return errors.New("flaky read model")
		}
		return nil
	}
	log, buf := testLogger(t)
	p := projection.Projection{Name: "rm", Handler: readModelHandler(fail)}
	r := start(t, pool, p, projection.Config{BatchSize: 5, MaxRetries: 5, RetryBackoff: time.Millisecond, Logger: log})
	waitApplied(t, pool, 30*time.Second, nil)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	checkReadModel(t, pool)
	if fails.Load() != 3 || strings.Count(buf.String(), "handler failed, retrying") != 3 || strings.Count(buf.String(), "aggregate_id=agg-2 aggregate_version=2") != 4 {
		t.Errorf("failures %d; log:\n%s", fails.Load(), buf.String())
	}
}

// Past its retries, a failing handler stops the run with an error naming the event;
// the checkpoint stays just before it, with everything before it applied.
func TestHandlerErrorStopsPartitionBeforeEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newReadModelDB(t)
	appendN(t, pool, "agg", 5, 4) // 20 events
	var poison eventstore.Event
	fail := func(ev *eventstore.Event) error {
		if ev.AggregateID == "agg-3" && ev.AggregateVersion == 2 {
			poison = *ev
			return errors.New("cannot apply this one")
		}
		return nil
	}
	log, buf := testLogger(t)
	p := projection.Projection{Name: "rm", Handler: readModelHandler(fail)}
	err := projection.Run(ctx, pool, p, projection.Config{BatchSize: 100, MaxRetries: 2, RetryBackoff: time.Millisecond, Logger: log})
	var herr *projection.HandlerError
	if !errors.As(err, &herr) {
		t.Fatalf("Run returned %v, want a *HandlerError", err)
	}
	for _, want := range []string{"projection rm", "partition 0/1", poison.EventID.String(), "Tick", "agg-3", poison.Position.String(), "3 times"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if !strings.Contains(buf.String(), "handler failed; partition stopped before the event") {
		t.Errorf("no error log line:\n%s", buf.String())
	}
	// Events before the poison one (agg-0..4 v1, agg-0..2 v2) are applied and checkpointed.
	if n := count(t, pool, "SELECT count(*) FROM rm_events"); n != 8 {
		t.Errorf("%d events applied, want the 8 before the poison event", n)
	}
	st, err := projection.Status(ctx, pool, "rm")
	if err != nil {
		t.Fatal(err)
	}
	var before eventstore.Position
	if err := pool.QueryRow(ctx, `SELECT transaction_id::text::bigint, global_position FROM esgen_events
		WHERE (transaction_id, global_position) < ($1::text::xid8, $2) ORDER BY transaction_id DESC, global_position DESC LIMIT 1`,
		fmt.Sprint(poison.Position.TransactionID), poison.Position.GlobalPosition).Scan(&before.TransactionID, &before.GlobalPosition); err != nil {
		t.Fatal(err)
	}
	if cp := st.Partitions[0].Checkpoint; cp.Position != before || !cp.Handled(before) || cp.Handled(poison.Position) {
		t.Errorf("checkpoint %v, want %v (just before the poison event at %v)", cp, before, poison.Position)
	}
	// After a fix, it goes on from there.
	r := start(t, pool, projection.Projection{Name: "rm", Handler: readModelHandler(nil)}, projection.Config{Logger: log})
	waitApplied(t, pool, 30*time.Second, nil)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	checkReadModel(t, pool)
}

// Cancelling Run while a batch is in hand lets the batch finish and commit.
func TestStopFinishesBatchInHand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newReadModelDB(t)
	appendN(t, pool, "agg", 10, 1)
	inBatch := make(chan struct{})
	var once sync.Once
	var calls atomic.Int64
	slow := func(ev *eventstore.Event) error {
		calls.Add(1)
		once.Do(func() { close(inBatch) })
		time.Sleep(20 * time.Millisecond)
		return nil
	}
	log, _ := testLogger(t)
	r := start(t, pool, projection.Projection{Name: "rm", Handler: readModelHandler(slow)}, projection.Config{BatchSize: 10, Logger: log})
	<-inBatch
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	st, err := projection.Status(ctx, pool, "rm")
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, "SELECT count(*) FROM rm_events"); n != 10 || st.Partitions[0].EventsHandled != 10 || calls.Load() != 10 {
		t.Errorf("after stop: %d applied, checkpoint counts %d, handler called %d times; want the whole batch of 10", n, st.Partitions[0].EventsHandled, calls.Load())
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	h := readModelHandler(nil)
	cases := []struct {
		p    projection.Projection
		cfg  projection.Config
		want string
	}{
		{projection.Projection{Handler: h}, projection.Config{}, "no name"},
		{projection.Projection{Name: "x"}, projection.Config{}, "no handler"},
		{projection.Projection{Name: "x", Handler: h}, projection.Config{TotalPartitions: 2}, "not partitioned"},
		{projection.Projection{Name: "x", Handler: h, Partitioned: true}, projection.Config{TotalPartitions: 4, Partitions: []int{5}}, "with 4 partitions the key must be 0..3"},
		{projection.Projection{Name: "x", Handler: h, Partitioned: true}, projection.Config{TotalPartitions: 4, Partitions: []int{1, 1}}, "listed twice"},
		{projection.Projection{Name: "x", Handler: h}, projection.Config{BatchSize: -1}, "batch size"},
		{projection.Projection{Name: "x", Handler: h}, projection.Config{PollInterval: -time.Second}, "poll interval"},
		{projection.Projection{Name: "x", Handler: h, Partitioned: true}, projection.Config{TotalPartitions: 4, AutoAssign: true, LeaseTTL: 100 * time.Millisecond}, "lease time must be at least 1s"},
		{projection.Projection{Name: "x", Handler: h, Partitioned: true}, projection.Config{TotalPartitions: 4, AutoAssign: true, Partitions: []int{1}}, "with automatic assignment"},
	}
	for _, c := range cases {
		err := projection.Run(context.Background(), nil, c.p, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v %+v: got %v, want %q", c.p.Name, c.cfg, err, c.want)
		}
	}
	d := projection.Config{}.WithDefaults()
	if d.TotalPartitions != 1 || len(d.Partitions) != 1 || d.BatchSize != projection.DefaultBatchSize || d.PollInterval != time.Second || d.Logger == nil {
		t.Errorf("defaults: %+v", d)
	}
}

// A panicking handler is a failing handler: the partition stops with an error naming
// the event instead of crashing the process.
func TestHandlerPanicIsAnError(t *testing.T) {
	t.Parallel()
	_, pool := newReadModelDB(t)
	appendN(t, pool, "agg", 3, 1)
	boom := func(ev *eventstore.Event) error {
		if ev.AggregateID == "agg-1" {
			panic("boom")
		}
		return nil
	}
	log, _ := testLogger(t)
	err := projection.Run(context.Background(), pool, projection.Projection{Name: "rm", Handler: readModelHandler(boom)},
		projection.Config{MaxRetries: -1, Logger: log})
	var herr *projection.HandlerError
	if !errors.As(err, &herr) || herr.Event.AggregateID != "agg-1" || !strings.Contains(err.Error(), "handler panicked: boom") {
		t.Fatalf("Run returned %v", err)
	}
	if n := count(t, pool, "SELECT count(*) FROM rm_events"); n != 1 {
		t.Errorf("%d events applied, want the one before the panic", n)
	}
}

// A partition reads more events per statement than it handles per transaction: every
// transaction still handles at most BatchSize events, and every event is handled once,
// in order, also when a handler fails in the middle of a read (the rest of the read
// is dropped and read again from the checkpoint).
func TestBatchesOfAReadStayBatchSize(t *testing.T) {
	t.Parallel()
	_, pool := newReadModelDB(t)
	appendN(t, pool, "agg", 20, 10)
	var (
		mu    sync.Mutex
		perTx = map[string]int{}
		fails atomic.Int32
	)
	count := projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
		var xid string
		if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text`).Scan(&xid); err != nil {
			return err
		}
		mu.Lock()
		perTx[xid]++
		mu.Unlock()
		return nil
	})
	rm := readModelHandler(func(ev *eventstore.Event) error {
		if ev.AggregateID == "agg-7" && ev.AggregateVersion == 6 && fails.Add(1) <= 2 {
			return errors.New("flaky read model")
		}
		return nil
	})
	h := projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
		if err := rm.Handle(ctx, tx, ev); err != nil {
			return err
		}
		return count.Handle(ctx, tx, ev)
	})
	const batch = 7
	r := start(t, pool, projection.Projection{Name: "rm", Handler: h},
		projection.Config{BatchSize: batch, MaxRetries: 5, RetryBackoff: time.Millisecond})
	waitApplied(t, pool, 30*time.Second, nil)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	checkReadModel(t, pool)
	mu.Lock()
	defer mu.Unlock()
	handled := 0
	for xid, n := range perTx {
		if n > batch {
			t.Errorf("transaction %s handled %d events, batch size %d", xid, n, batch)
		}
		handled += n
	}
	// Transactions that failed handled a few events and rolled back: they count too.
	if handled < 200 || len(perTx) < 200/batch {
		t.Errorf("%d events in %d transactions", handled, len(perTx))
	}
	if fails.Load() < 3 {
		t.Errorf("the failing event was handled %d times", fails.Load())
	}
}
