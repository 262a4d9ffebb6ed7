package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/esgen-dev/esgen/internal/buildinfo"
	"github.com/esgen-dev/esgen/projection"
)

// monitor is the projection.Observer of a projector with --metrics-addr: it keeps the
// Prometheus metrics (docs/operations.md lists them) and each partition's health, and
// serves them with /healthz and /readyz.
type monitor struct {
	projection string
	reg        *prometheus.Registry

	handled, skipped, batches, retries *prometheus.CounterVec
	batchSeconds                       *prometheus.HistogramVec
	lagEvents, lagSeconds, holes       *prometheus.GaugeVec
	state                              *prometheus.GaugeVec
	partitionCount, generation         *prometheus.GaugeVec
	assignments, failovers             *prometheus.CounterVec
	owned                              *prometheus.GaugeVec

	// threshold: database retries or silence this long fail /healthz.
	threshold, stuckAfter time.Duration

	mu    sync.Mutex
	parts map[int]*health
	now   func() time.Time
}

// health is what /healthz and /readyz know of a partition.
type health struct {
	state projection.StateChange
	seen  time.Time // the last report of any kind
}

func newMonitor(name string, keys []int, total int, threshold, poll time.Duration) *monitor {
	m := &monitor{projection: name, reg: prometheus.NewRegistry(), threshold: threshold, parts: map[int]*health{}, now: time.Now}
	// A partition reports at least once per poll interval while it is not in a batch.
	m.stuckAfter = max(threshold, 3*poll)
	labels := []string{"projection", "partition"}
	counter := func(name, help string, extra ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append(labels, extra...))
	}
	gauge := func(name, help string, l ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, l)
	}
	m.handled = counter("esgen_projection_events_handled_total", "Events the partition's handler handled (committed).")
	m.skipped = counter("esgen_projection_events_skipped_total", "Events the partition passed without handling them because an operator skipped them (esgen skip).")
	m.batches = counter("esgen_projection_batches_total", "Batches the partition committed with at least one event.")
	m.retries = counter("esgen_projection_retries_total", "Retries of the partition, by cause: handler (a failing event) or database (connection lost, server restarting, ...).", "cause")
	m.batchSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "esgen_projection_batch_duration_seconds",
		Help:    "Time of a committed batch, from its read to its commit.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"projection"})
	m.lagEvents = gauge("esgen_projection_lag_events", "Committed events of the partition not handled yet (counted at most every 5 s while behind, estimated in between).", labels...)
	m.lagSeconds = gauge("esgen_projection_lag_seconds", "Age of the oldest event of the partition not handled yet (0 when caught up).", labels...)
	m.holes = gauge("esgen_projection_checkpoint_holes", "Transactions the partition's checkpoint passed while they were running, whose later events it still has to handle.", labels...)
	m.state = gauge("esgen_projection_partition_state", "1 for the partition's current state (starting, running, retrying, stopped), 0 for the others.", "projection", "partition", "state")
	m.partitionCount = gauge("esgen_projection_partitions", "The partition count of the layout this process runs.", "projection")
	m.generation = gauge("esgen_projection_layout_generation", "The layout generation this process runs (it changes with the partition count).", "projection")
	m.assignments = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esgen_projection_assignments_total",
		Help: "Changes of the partitions this auto-assigned worker runs (--partition-key=auto), by change: claimed, released (after its batch: stopping, or over its fair share) or lost (another worker claimed it after the lease expired, or the lease could not be renewed)."},
		[]string{"projection", "change"})
	m.failovers = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esgen_projection_failovers_total",
		Help: "Partitions this auto-assigned worker claimed after another worker's lease expired (the other died, lost the network or was paused)."},
		[]string{"projection"})
	m.owned = gauge("esgen_projection_partitions_owned", "Partitions this process runs now (with --partition-key=auto: the leases it holds).", "projection")
	info := buildinfo.Read()
	build := gauge("esgen_build_info", "Always 1: the build of this binary, as labels.", "path", "version", "esgen_version", "revision", "modified", "go_version")
	build.WithLabelValues(info.Path, info.Version, info.Esgen, info.Revision, strconv.FormatBool(info.Modified), info.GoVersion).Set(1)

	m.reg.MustRegister(m.handled, m.skipped, m.batches, m.retries, m.batchSeconds, m.lagEvents, m.lagSeconds, m.holes,
		m.state, m.partitionCount, m.generation, m.assignments, m.failovers, m.owned, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.partitionCount.WithLabelValues(name).Set(float64(total))
	for _, change := range []string{"claimed", "released", "lost"} {
		m.assignments.WithLabelValues(name, change)
	}
	m.failovers.WithLabelValues(name)
	for _, k := range keys {
		m.addPartition(projection.Partition{Projection: name, Key: k, Total: total})
	}
	m.owned.WithLabelValues(name).Set(float64(len(keys)))
	return m
}

// addPartition starts the health and the series of a partition the process runs.
func (m *monitor) addPartition(part projection.Partition) {
	now := m.now()
	m.parts[part.Key] = &health{state: projection.StateChange{State: projection.StateStarting, Since: now}, seen: now}
	m.setState(part, projection.StateStarting)
	// Every series exists from the start, so that rate() and absent() work.
	p := strconv.Itoa(part.Key)
	m.handled.WithLabelValues(part.Projection, p)
	m.skipped.WithLabelValues(part.Projection, p)
	m.batches.WithLabelValues(part.Projection, p)
	m.retries.WithLabelValues(part.Projection, p, "handler")
	m.retries.WithLabelValues(part.Projection, p, "database")
}

// Assignment implements projection.AssignmentObserver: an auto-assigned worker's
// health and state series cover the partitions it holds now; the counters of a
// partition it gave back stay (they only grow).
func (m *monitor) Assignment(p projection.Partition, c projection.AssignmentChange) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.assignments.WithLabelValues(p.Projection, c.Kind.String()).Inc()
	switch c.Kind {
	case projection.AssignClaimed:
		if c.PreviousOwner != "" {
			m.failovers.WithLabelValues(p.Projection).Inc()
		}
		m.addPartition(p)
	case projection.AssignReleased, projection.AssignLost:
		delete(m.parts, p.Key)
		k := strconv.Itoa(p.Key)
		for _, st := range projection.States {
			m.state.DeleteLabelValues(p.Projection, k, st.String())
		}
		m.lagEvents.DeleteLabelValues(p.Projection, k)
		m.lagSeconds.DeleteLabelValues(p.Projection, k)
		m.holes.DeleteLabelValues(p.Projection, k)
	}
	m.owned.WithLabelValues(p.Projection).Set(float64(len(m.parts)))
}

func (m *monitor) setState(p projection.Partition, s projection.State) {
	k := strconv.Itoa(p.Key)
	for _, st := range projection.States {
		v := 0.0
		if st == s {
			v = 1
		}
		m.state.WithLabelValues(p.Projection, k, st.String()).Set(v)
	}
}

// seen records a report of partition p and returns its health (nil for a partition
// the process does not run).
func (m *monitor) seen(p projection.Partition) *health {
	h := m.parts[p.Key]
	if h != nil {
		h.seen = m.now()
	}
	return h
}

// PartitionState implements projection.Observer.
func (m *monitor) PartitionState(p projection.Partition, s projection.StateChange) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.seen(p)
	if h == nil {
		return
	}
	h.state = s
	m.setState(p, s.State)
	if s.State == projection.StateRetrying {
		m.retries.WithLabelValues(p.Projection, strconv.Itoa(p.Key), s.Cause.String()).Inc()
	}
	if p.Generation > 0 {
		m.generation.WithLabelValues(p.Projection).Set(float64(p.Generation))
	}
}

// Batch implements projection.Observer.
func (m *monitor) Batch(p projection.Partition, handled, skipped int, took time.Duration) {
	m.mu.Lock()
	m.seen(p)
	m.mu.Unlock()
	k := strconv.Itoa(p.Key)
	m.handled.WithLabelValues(p.Projection, k).Add(float64(handled))
	m.skipped.WithLabelValues(p.Projection, k).Add(float64(skipped))
	m.batches.WithLabelValues(p.Projection, k).Inc()
	m.batchSeconds.WithLabelValues(p.Projection).Observe(took.Seconds())
}

// Lag implements projection.Observer.
func (m *monitor) Lag(p projection.Partition, l projection.Lag) {
	m.mu.Lock()
	m.seen(p)
	m.mu.Unlock()
	k := strconv.Itoa(p.Key)
	m.lagEvents.WithLabelValues(p.Projection, k).Set(float64(max(l.Events, 0)))
	m.lagSeconds.WithLabelValues(p.Projection, k).Set(l.Oldest.Seconds())
	m.holes.WithLabelValues(p.Projection, k).Set(float64(len(l.Checkpoint.Holes)))
}

// healthy reports whether the process is alive and not stuck: no partition stopped,
// none retrying the database for longer than the threshold, none silent for longer
// (in one batch, a handler or a statement). Otherwise it says why, per partition.
func (m *monitor) healthy() (bool, []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var problems []string
	for _, k := range m.keys() {
		h := m.parts[k]
		s := h.state
		switch {
		case s.State == projection.StateStopped:
			problems = append(problems, fmt.Sprintf("partition %d stopped: %v", k, s.Err))
		case s.State == projection.StateRetrying && s.Cause == projection.RetryDatabase && now.Sub(s.Since) > m.threshold:
			problems = append(problems, fmt.Sprintf("partition %d has retried the database for %s: %v", k, now.Sub(s.Since).Round(time.Second), s.Err))
		case s.State != projection.StateStarting && now.Sub(h.seen) > m.stuckAfter:
			problems = append(problems, fmt.Sprintf("partition %d has reported nothing for %s (stuck in a batch?)", k, now.Sub(h.seen).Round(time.Second)))
		}
	}
	return len(problems) == 0, problems
}

// ready reports whether every partition runs: the layout is prepared, and none waits
// for the database or is stopped (a partition retrying its handler still runs).
func (m *monitor) ready() (bool, []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var problems []string
	for _, k := range m.keys() {
		s := m.parts[k].state
		switch {
		case s.State == projection.StateStarting:
			problems = append(problems, fmt.Sprintf("partition %d is starting", k))
		case s.State == projection.StateStopped:
			problems = append(problems, fmt.Sprintf("partition %d stopped", k))
		case s.State == projection.StateRetrying && s.Cause == projection.RetryDatabase:
			problems = append(problems, fmt.Sprintf("partition %d waits for the database: %v", k, s.Err))
		}
	}
	return len(problems) == 0, problems
}

func (m *monitor) keys() []int {
	keys := make([]int, 0, len(m.parts))
	for k := range m.parts {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}

// handler serves /metrics, /healthz and /readyz.
func (m *monitor) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	check := func(f func() (bool, []string)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			ok, problems := f()
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			if !ok {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "projection %s: %s\n", m.projection, strings.Join(problems, "; "))
				return
			}
			fmt.Fprintf(w, "ok\n")
		}
	}
	mux.Handle("/healthz", check(m.healthy))
	mux.Handle("/readyz", check(m.ready))
	return mux
}

// serve listens on addr and serves in the background until the returned stop is called.
// It returns the address it listens on (with the port chosen for ":0").
func (m *monitor) serve(addr string, log *slog.Logger) (stop func(), listening string, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: m.handler(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "error", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, ln.Addr().String(), nil
}
