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

// latencyRun appends samples events, one per transaction, every appendInterval,
// while a projection handles them, and returns each event's time from just before
// Append to the start of its handler.
type latencyRun struct {
	pool    *pgxpool.Pool
	name    string
	notify  bool
	samples int
	// during, when set, runs alongside the appends, from just before the first one;
	// the run waits for it to return before it stops the projection. It may append
	// events of eventType whose payload is {"held": true}; their handling times are
	// returned, and the run waits for held of them.
	during func(ctx context.Context, eventType string) error
	held   int
}

// latencyOutcome is what a latencyRun measured.
type latencyOutcome struct {
	lats []time.Duration // per sample, append → handled
	sent []time.Time     // per sample (same order as lats), when it was appended
	held []time.Time     // when each held event was handled
}

func (l latencyRun) run(ctx context.Context) (latencyOutcome, error) {
	eventType := "Probe_" + l.name
	var (
		mu   sync.Mutex
		out  latencyOutcome
		all  = make(chan struct{})
		warm = make(chan struct{}, 1)
	)
	h := projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
		now := time.Now()
		var body struct {
			SentNs int64 `json:"sent_ns"`
			Held   bool  `json:"held"`
		}
		if err := json.Unmarshal(ev.Payload, &body); err != nil {
			return err
		}
		if body.SentNs == 0 && !body.Held { // the warm-up event
			select {
			case warm <- struct{}{}:
			default:
			}
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if body.Held {
			out.held = append(out.held, now)
		} else {
			sent := time.Unix(0, body.SentNs)
			out.lats = append(out.lats, now.Sub(sent))
			out.sent = append(out.sent, sent)
		}
		if len(out.lats) == l.samples && len(out.held) == l.held {
			close(all)
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
		return latencyOutcome{}, err
	}
	select {
	case <-warm:
	case err := <-runErr:
		return latencyOutcome{}, fmt.Errorf("projection stopped: %v", err)
	case <-time.After(30 * time.Second):
		return latencyOutcome{}, fmt.Errorf("projection %s did not handle its warm-up event", l.name)
	}
	duringErr := make(chan error, 1)
	if l.during != nil {
		go func() { duringErr <- l.during(ctx, eventType) }()
	} else {
		duringErr <- nil
	}
	tick := time.NewTicker(appendInterval)
	defer tick.Stop()
	for i := range l.samples {
		sent := time.Now()
		payload := []byte(`{"sent_ns":` + strconv.FormatInt(sent.UnixNano(), 10) + `}`)
		if _, err := eventstore.Append(ctx, l.pool, "Probe", "probe-"+strconv.Itoa(i%10), eventstore.Any,
			eventstore.EventData{Type: eventType, Payload: payload}); err != nil {
			return latencyOutcome{}, err
		}
		<-tick.C
	}
	if err := <-duringErr; err != nil {
		return latencyOutcome{}, err
	}
	select {
	case <-all:
	case err := <-runErr:
		return latencyOutcome{}, fmt.Errorf("projection stopped: %v", err)
	case <-time.After(time.Minute):
		mu.Lock()
		defer mu.Unlock()
		return latencyOutcome{}, fmt.Errorf("projection %s handled %d of %d events (and %d of %d held ones) within a minute",
			l.name, len(out.lats), l.samples, len(out.held), l.held)
	}
	stop()
	if err := <-runErr; err != nil {
		return latencyOutcome{}, err
	}
	// The projection has stopped: nothing writes out any more.
	return out, nil
}

// within returns the latencies of the samples appended between from and to.
func (o latencyOutcome) within(from, to time.Time) []time.Duration {
	var out []time.Duration
	for i, s := range o.sent {
		if !s.Before(from) && s.Before(to) {
			out = append(out, o.lats[i])
		}
	}
	return out
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
		o, err := latencyRun{pool: pool, name: fmt.Sprintf("bench_latency_%t", notify), notify: notify, samples: r.cfg.LatencySamples}.run(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		res := latencyResult(GroupLatency, name, o.lats, time.Since(start))
		res.Note = fmt.Sprintf("one event per transaction every %s", appendInterval)
		r.add(res)
	}
	return nil
}
