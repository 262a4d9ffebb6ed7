package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projection"
)

// appendInterval is the gap between the appends whose latency is measured: arrivals
// are open-loop, so a slow wake-up does not slow the appender down.
const appendInterval = 20 * time.Millisecond

// latencyRun appends cfg.samples events, one per transaction, every appendInterval,
// while a projection handles them, and returns each event's time from just before
// Append to the start of its handler.
type latencyRun struct {
	pool     *pgxpool.Pool
	name     string
	notify   bool
	samples  int
	duringFn func(ctx context.Context) // runs alongside the appends (may be nil)
}

func (l latencyRun) run(ctx context.Context) ([]time.Duration, error) {
	eventType := "Probe_" + l.name
	var mu sync.Mutex
	var lats []time.Duration
	handledAll := make(chan struct{})
	warm := make(chan struct{}, 1)
	h := projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
		now := time.Now()
		var body struct {
			SentNs int64 `json:"sent_ns"`
		}
		if err := json.Unmarshal(ev.Payload, &body); err != nil {
			return err
		}
		if body.SentNs == 0 { // the warm-up event
			select {
			case warm <- struct{}{}:
			default:
			}
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		lats = append(lats, now.Sub(time.Unix(0, body.SentNs)))
		if len(lats) == l.samples {
			close(handledAll)
		}
		return nil
	})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runErr := make(chan error, 1)
	go func() {
		// Each run handles only its own event type: the stream also holds the events
		// of earlier runs and scenarios.
		runErr <- projection.Run(runCtx, l.pool, projection.Projection{Name: l.name, Handler: h, EventTypes: []string{eventType}},
			projection.Config{DisableNotify: !l.notify, Logger: slog.New(slog.DiscardHandler)})
	}()
	// The projection is running and caught up once the warm-up event is handled.
	if _, err := eventstore.Append(ctx, l.pool, "Probe", l.name+"-warm", eventstore.Any,
		eventstore.EventData{Type: eventType, Payload: []byte(`{}`)}); err != nil {
		return nil, err
	}
	select {
	case <-warm:
	case err := <-runErr:
		return nil, fmt.Errorf("projection stopped: %v", err)
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("projection %s did not handle its warm-up event", l.name)
	}
	if l.duringFn != nil {
		go l.duringFn(ctx)
	}
	tick := time.NewTicker(appendInterval)
	defer tick.Stop()
	for i := range l.samples {
		sent := time.Now()
		payload := []byte(`{"sent_ns":` + strconv.FormatInt(sent.UnixNano(), 10) + `}`)
		if _, err := eventstore.Append(ctx, l.pool, "Probe", "probe-"+strconv.Itoa(i%10), eventstore.Any,
			eventstore.EventData{Type: eventType, Payload: payload}); err != nil {
			return nil, err
		}
		<-tick.C
	}
	select {
	case <-handledAll:
	case err := <-runErr:
		return nil, fmt.Errorf("projection stopped: %v", err)
	case <-time.After(time.Minute):
		return nil, fmt.Errorf("projection %s handled %d of %d events within a minute", l.name, len(lats), l.samples)
	}
	stop()
	if err := <-runErr; err != nil {
		return nil, err
	}
	return lats, nil
}

// percentile returns the p-th percentile (0..1) of sorted durations, in milliseconds.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

func latencyResult(group, name string, lats []time.Duration, elapsed time.Duration) Result {
	slices.Sort(lats)
	return Result{Group: group, Name: name, Events: int64(len(lats)), Seconds: elapsed.Seconds(),
		EventsPerSec: float64(len(lats)) / elapsed.Seconds(),
		P50Ms:        percentile(lats, 0.50), P99Ms: percentile(lats, 0.99)}
}

func (r *runner) latencyGroup(ctx context.Context) error {
	pool, _, done, err := r.database(ctx, GroupLatency, 8)
	if err != nil {
		return err
	}
	defer done()
	for _, notify := range []bool{true, false} {
		name := "append → handled, NOTIFY"
		if !notify {
			name = fmt.Sprintf("append → handled, polling only (every %s)", projection.DefaultPollInterval)
		}
		start := time.Now()
		lats, err := latencyRun{pool: pool, name: fmt.Sprintf("bench_latency_%t", notify), notify: notify, samples: r.cfg.LatencySamples}.run(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		res := latencyResult(GroupLatency, name, lats, time.Since(start))
		res.Note = fmt.Sprintf("one event per transaction every %s", appendInterval)
		r.add(res)
	}
	return nil
}

// holdTransaction opens a transaction that takes a transaction id and keeps it open
// until release is called (or hold passes). It touches no esgen table.
func holdTransaction(ctx context.Context, pool *pgxpool.Pool) (release func(), err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		conn.Release()
		return nil, err
	}
	if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		_ = tx.Rollback(ctx)
		conn.Release()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			conn.Release()
		})
	}, nil
}

func (r *runner) gapGroup(ctx context.Context) error {
	pool, url, done, err := r.database(ctx, GroupGap, 8)
	if err != nil {
		return err
	}
	defer done()
	hold := r.cfg.Hold

	// Catch-up: events written after an unrelated transaction took its id stay
	// invisible to commit-safe readers until that transaction ends.
	release, err := holdTransaction(ctx, pool)
	if err != nil {
		return err
	}
	defer release()
	n, err := loadStream(ctx, pool, max(r.cfg.CatchUpEvents/10, 10_000))
	if err != nil {
		return err
	}
	spec := catchUpSpec{Database: url, Projection: "bench_gap_held", Handler: handlerNoop, Partitions: []int{0}, Total: 1, Target: int64(n)}
	timer := time.AfterFunc(hold, release)
	held, err := r.inProcess(ctx, pool, url, spec)
	timer.Stop()
	release()
	if err != nil {
		return fmt.Errorf("catch-up while a transaction is open: %w", err)
	}
	spec.Projection = "bench_gap_free"
	free, err := r.inProcess(ctx, pool, url, spec)
	if err != nil {
		return fmt.Errorf("catch-up: %w", err)
	}
	free.Group, held.Group = GroupGap, GroupGap
	free.Baseline, free.Name = true, "catch-up, no-op handler, 1 worker, nothing open"
	free.RowsScanned, free.RowsReturned = 0, 0
	r.add(free)
	held.Name = fmt.Sprintf("catch-up, same, an older transaction open %s", hold)
	held.RawName = free.Name
	held.RowsScanned, held.RowsReturned = 0, 0
	held.Note = "the events were written after the open transaction took its id"
	r.add(held)

	// Latency: appends made while the transaction is open wait for it to end.
	samples := max(int(hold/appendInterval), 10)
	start := time.Now()
	lats, err := latencyRun{pool: pool, name: "bench_gap_latency", notify: true, samples: samples,
		duringFn: func(ctx context.Context) {
			rel, err := holdTransaction(ctx, pool)
			if err != nil {
				fmt.Fprintf(r.cfg.Progress, "bench: could not open the transaction: %v\n", err)
				return
			}

			time.Sleep(hold)
			rel()
		}}.run(ctx)
	if err != nil {
		return fmt.Errorf("latency while a transaction is open: %w", err)
	}
	res := latencyResult(GroupGap, fmt.Sprintf("append → handled, NOTIFY, a transaction open %s", hold), lats, time.Since(start))
	res.Note = "appends made while an unrelated transaction with an id stays open"
	r.add(res)
	return nil
}
