package projection

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
)

// batchSizes runs a projection (a new one, name) that is not partitioned over the n events in pool with
// cfg until it has handled them all, the k-th event handled (from 0) taking delay(k) in
// its handler, and
// returns the number of events of each of its transactions, in order. It fails the test
// unless every event was handled exactly once, in the order of the stream.
func batchSizes(t *testing.T, pool *pgxpool.Pool, name string, n int, cfg Config, delay func(k int) time.Duration) []int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu    sync.Mutex
		sizes []int
		last  pgx.Tx
		seen  = map[int64]bool{}
		prev  eventstore.Position
		order error
	)
	h := HandlerFunc(func(_ context.Context, tx pgx.Tx, ev *eventstore.Event) error {
		mu.Lock()
		k := len(seen)
		mu.Unlock()
		if d := delay(k); d > 0 {
			time.Sleep(d)
		}
		mu.Lock()
		defer mu.Unlock()
		// One value per batch: a new one starts a new transaction.
		if tx != last {
			sizes, last = append(sizes, 0), tx
		}
		sizes[len(sizes)-1]++
		switch {
		case seen[ev.Position.GlobalPosition]:
			order = errors.Join(order, errors.New("an event was handled twice"))
		case ev.Position.Less(prev):
			order = errors.Join(order, errors.New("an event came before one it follows"))
		}
		seen[ev.Position.GlobalPosition], prev = true, ev.Position
		if len(seen) == n {
			cancel()
		}
		return nil
	})
	cfg.Partitions, cfg.TotalPartitions, cfg.DisableNotify = []int{0}, 1, true
	cfg.Logger = slog.New(slog.DiscardHandler)
	if err := Run(ctx, pool, Projection{Name: name, Handler: h}, cfg); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if order != nil {
		t.Fatal(order)
	}
	if len(seen) != n {
		t.Fatalf("%d of %d events handled", len(seen), n)
	}
	return sizes
}

// fast is no delay; every(d) is d for every event.
func fast(int) time.Duration { return 0 }

func every(d time.Duration) func(int) time.Duration { return func(int) time.Duration { return d } }

// A batch size left at 0 adapts: batches start at DefaultBatchSize, grow up to a whole
// read while their transactions stay short, and never pass a read; a batch size that
// is set is kept; with handlers slow enough that a batch of DefaultBatchSize takes more
// than half the target, batches stay at DefaultBatchSize. Every event is handled once
// and in order in each case.
func TestAdaptiveBatchSize(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	const events = 30000
	appendBacklog(t, pool, events, 300)

	// Fast handlers, a target no transaction misses: the batches grow to a read.
	sizes := batchSizes(t, pool, "adapts", events, Config{batchTarget: time.Hour}, fast)
	if sizes[0] != DefaultBatchSize {
		t.Errorf("first batch of %d events, want %d", sizes[0], DefaultBatchSize)
	}
	if largest := slices.Max(sizes); largest != readRows {
		t.Errorf("largest batch %d events, want a whole read (%d); batches %v", largest, readRows, sizes)
	}

	// A batch size that is set stays.
	sizes = batchSizes(t, pool, "set", events, Config{BatchSize: DefaultBatchSize, batchTarget: time.Hour}, fast)
	if largest := slices.Max(sizes); largest != DefaultBatchSize {
		t.Errorf("BatchSize %d set: largest batch %d events; batches %v", DefaultBatchSize, largest, sizes)
	}

	// Handlers that make a batch of DefaultBatchSize take at least 100 ms, against a
	// target of 10 ms: no batch grows, and none shrinks below DefaultBatchSize.
	const slow = 3000
	sizes = batchSizes(t, pool, "slow", slow, Config{batchTarget: 10 * time.Millisecond}, every(100*time.Microsecond))
	if largest := slices.Max(sizes); largest != DefaultBatchSize {
		t.Errorf("slow handlers: largest batch %d events, want %d; batches %v", largest, DefaultBatchSize, sizes)
	}
	if len(sizes) != slow/DefaultBatchSize {
		t.Errorf("slow handlers: %d batches for %d events, want %d; batches %v", len(sizes), slow, slow/DefaultBatchSize, sizes)
	}
}

// When the handlers slow down in the middle of a batch that adapted to more than the
// configured size, the batch ends once its transaction has run longer than the target
// (after the configured size at least), so no transaction handles more slow events than
// one of the configured size would.
func TestAdaptiveBatchEndsEarlyWhenHandlersSlowDown(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	const fastEvents, events = 14000, 17000
	appendBacklog(t, pool, events, 170)
	// A target that fast handlers meet with room to spare (so batches grow to a read),
	// and that 1000 slow events (1 ms each) miss.
	sizes := batchSizes(t, pool, "slowing", events, Config{batchTarget: 300 * time.Millisecond}, func(k int) time.Duration {
		if k < fastEvents {
			return 0
		}
		return time.Millisecond
	})
	start, grown := 0, false
	for _, n := range sizes {
		if start < fastEvents && n > DefaultBatchSize {
			grown = true
		}
		if slow := start + n - max(start, fastEvents); slow > DefaultBatchSize {
			t.Errorf("a transaction handled %d slow events, more than a batch of the configured size (%d); batches %v", slow, DefaultBatchSize, sizes)
		}
		start += n
	}
	if !grown {
		t.Fatalf("no batch grew past %d events before the handlers slowed down: the case was not tested; batches %v", DefaultBatchSize, sizes)
	}
}

// WithDefaults marks a batch size left at 0 as adaptive, and only that one, however
// often it is applied.
func TestWithDefaultsKeepsTheBatchSizeAdaptive(t *testing.T) {
	if c := (Config{}).WithDefaults().WithDefaults(); c.BatchSize != DefaultBatchSize || !c.adaptiveBatch {
		t.Errorf("Config{}: batch size %d, adaptive %v; want %d, true", c.BatchSize, c.adaptiveBatch, DefaultBatchSize)
	}
	if c := (Config{BatchSize: DefaultBatchSize}).WithDefaults(); c.adaptiveBatch {
		t.Error("a batch size that is set is adaptive")
	}
}

// The size of the next batch, batch after batch: doubled after a full batch that took
// at most half the target, up to a read; halved after one that took longer than the
// target, down to the configured size; kept otherwise.
func TestTuneBatchSize(t *testing.T) {
	w := &worker{cfg: Config{Partitions: []int{0}, TotalPartitions: 1}.WithDefaults(), total: 1}
	w.cfg.batchTarget = 40 * time.Millisecond
	ms := time.Millisecond
	steps := []struct {
		n, limit int
		took     time.Duration
		want     int
	}{
		{1000, 1000, 5 * ms, 2000},
		{2000, 2000, 20 * ms, 4000},
		{4000, 4000, 21 * ms, 4000}, // between half the target and the target: kept
		{4000, 4000, 10 * ms, 5000}, // never more than a read
		{5000, 5000, 1 * ms, 5000},
		{700, 5000, 60 * ms, 2500}, // the rest of a read that took too long
		{2500, 2500, 41 * ms, 1250},
		{300, 1250, 1 * ms, 1250}, // not full: kept
		{1250, 1250, 50 * ms, 1000},
		{1000, 1000, time.Second, 1000}, // never less than the configured size
	}
	for i, s := range steps {
		w.tuneBatchSize(s.n, s.limit, s.took)
		if w.batchSize != s.want {
			t.Fatalf("step %d: %d of %d events in %v: next batch %d, want %d", i, s.n, s.limit, s.took, w.batchSize, s.want)
		}
	}
	set := &worker{cfg: Config{Partitions: []int{0}, TotalPartitions: 1, BatchSize: 1000}.WithDefaults(), total: 1}
	set.tuneBatchSize(1000, 1000, time.Microsecond)
	if set.batchSize != 0 {
		t.Errorf("a batch size that is set was tuned to %d", set.batchSize)
	}
}
