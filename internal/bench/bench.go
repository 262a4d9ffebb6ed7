package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/internal/pgtest"
	"github.com/esgen-dev/esgen/migrate"
)

// Scenario groups, in the order they run and print.
const (
	GroupAppend   = "append"
	GroupCatchUp  = "catch-up"
	GroupUpsert   = "upsert"
	GroupLatency  = "latency"
	GroupGap      = "gap-safety"
	GroupFailover = "failover"
)

// Groups lists every scenario group.
var Groups = []string{GroupAppend, GroupCatchUp, GroupUpsert, GroupLatency, GroupGap, GroupFailover}

// Default and quick sizes.
const (
	DefaultCatchUpEvents = 1_000_000
	QuickCatchUpEvents   = 50_000
	DefaultAppendEvents  = 100_000
	QuickAppendEvents    = 10_000
)

// Config says what to run. The zero value runs everything at default size on the
// server of DATABASE_URL or a private throw-away cluster.
type Config struct {
	// DatabaseURL names the server to use (a database on it is created and dropped for
	// each group). Empty: pgtest.Start, that is DATABASE_URL or a private cluster.
	DatabaseURL string
	// Quick runs small sizes (well under 30 s in all).
	Quick bool
	// CatchUpEvents is the size of the stream the catch-up scenarios read (0: default).
	CatchUpEvents int
	// AppendEvents is the number of events each batched append scenario writes; the
	// single-event scenarios write a fifth of it, at least 1000 (0: default).
	AppendEvents int
	// LatencySamples is the number of events timed per latency scenario (0: default).
	LatencySamples int
	// Hold is how long the gap-safety latency scenarios keep their transaction open
	// (0: default).
	Hold time.Duration
	// Durable keeps fsync and synchronous commit on in the throw-away cluster (no effect
	// on a server named by DatabaseURL or DATABASE_URL).
	Durable bool
	// Only restricts the run to these groups (empty: all).
	Only []string
	// CPUProfile, when set, receives a CPU profile of the whole run.
	CPUProfile string
	// WorkerBinary runs the worker processes; empty: this binary again, which must call
	// RunWorkerIfRequested at start.
	WorkerBinary string
	// Progress receives one line per scenario as it runs (nil: nothing).
	Progress io.Writer
}

func (c Config) withDefaults() Config {
	if c.Quick {
		c.CatchUpEvents = cmp.Or(c.CatchUpEvents, QuickCatchUpEvents)
		c.AppendEvents = cmp.Or(c.AppendEvents, QuickAppendEvents)
		c.LatencySamples = cmp.Or(c.LatencySamples, 50)
		c.Hold = cmp.Or(c.Hold, time.Second)
	}
	c.CatchUpEvents = cmp.Or(c.CatchUpEvents, DefaultCatchUpEvents)
	c.AppendEvents = cmp.Or(c.AppendEvents, DefaultAppendEvents)
	c.LatencySamples = cmp.Or(c.LatencySamples, 300)
	c.Hold = cmp.Or(c.Hold, 3*time.Second)
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c
}

func (c Config) validate() error {
	if c.CatchUpEvents < 1000 {
		return fmt.Errorf("bench: catch-up needs at least 1000 events, got %d", c.CatchUpEvents)
	}
	if c.AppendEvents < 1000 {
		return fmt.Errorf("bench: append needs at least 1000 events, got %d", c.AppendEvents)
	}
	if c.Hold < 100*time.Millisecond {
		return fmt.Errorf("bench: --hold must be at least 100ms, got %s", c.Hold)
	}
	for _, g := range c.Only {
		if !slices.Contains(Groups, g) {
			return fmt.Errorf("bench: unknown group %q (groups: %v)", g, Groups)
		}
	}
	return nil
}

func (c Config) runs(group string) bool {
	return len(c.Only) == 0 || slices.Contains(c.Only, group)
}

// Run runs the benchmarks and returns the report. A failing scenario ends the run with
// its error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return nil, fmt.Errorf("bench: cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, fmt.Errorf("bench: cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	var srv *pgtest.Server
	var err error
	if cfg.DatabaseURL != "" {
		srv, err = pgtest.External(ctx, cfg.DatabaseURL)
	} else {
		srv, err = pgtest.Start(ctx, pgtest.Options{Settings: statementSettings, Durable: cfg.Durable})
		if err != nil && os.Getenv("DATABASE_URL") == "" {
			// A PostgreSQL without pg_stat_statements: measure without the server's
			// breakdown.
			srv, err = pgtest.Start(ctx, pgtest.Options{Durable: cfg.Durable})
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer srv.Stop()

	r := &runner{cfg: cfg, srv: srv, report: &Report{Started: time.Now().UTC(), Quick: cfg.Quick}}
	start := time.Now()
	if r.report.Machine, err = describeMachine(ctx, srv); err != nil {
		return nil, err
	}
	steps := []struct {
		group string
		run   func(context.Context) error
	}{
		{GroupAppend, r.appendGroup},
		{GroupCatchUp, r.catchUpGroup},
		{GroupUpsert, r.upsertGroup},
		{GroupLatency, r.latencyGroup},
		{GroupGap, r.gapGroup},
		{GroupFailover, r.failoverGroup},
	}
	for _, s := range steps {
		if !cfg.runs(s.group) {
			continue
		}
		if err := s.run(ctx); err != nil {
			return nil, fmt.Errorf("bench %s: %w", s.group, err)
		}
	}
	r.report.Seconds = time.Since(start).Seconds()
	r.report.Machine.LoadAvg[1] = loadAvg()
	r.report.finish()
	return r.report, nil
}

// runner carries one run's state.
type runner struct {
	cfg    Config
	srv    *pgtest.Server
	report *Report
	// statements: pg_stat_statements works in the bench databases.
	statements bool
}

func (r *runner) add(res Result) {
	r.report.Results = append(r.report.Results, res)
	if res.EventsPerSec == 0 && res.MaxMs > 0 { // times, not a rate
		fmt.Fprintf(r.cfg.Progress, "bench: %-9s %-44s %10d times  p50 %.0f ms, max %.0f ms\n", res.Group, res.Name, res.Events, res.P50Ms, res.MaxMs)
		return
	}
	fmt.Fprintf(r.cfg.Progress, "bench: %-9s %-44s %10d events %12.0f events/s\n", res.Group, res.Name, res.Events, res.EventsPerSec)
}

func (r *runner) note(format string, args ...any) {
	r.report.Notes = append(r.report.Notes, fmt.Sprintf(format, args...))
}

// database creates a migrated database for one group and returns a pool on it and a
// function that closes the pool and drops the database.
func (r *runner) database(ctx context.Context, group string, maxConns int32) (*pgxpool.Pool, string, func(), error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "esgen_bench_" + hex.EncodeToString(b[:])
	url, err := r.srv.CreateDatabase(ctx, name)
	if err != nil {
		return nil, "", nil, err
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = r.srv.DropDatabase(ctx, name)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		drop()
		return nil, "", nil, fmt.Errorf("connect: %w", err)
	}
	_, err = migrate.Up(ctx, conn, migrate.All())
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		drop()
		return nil, "", nil, err
	}
	pool, err := newPool(ctx, url, maxConns)
	if err != nil {
		drop()
		return nil, "", nil, err
	}
	r.statements = enableStatements(ctx, pool)
	return pool, url, func() { pool.Close(); drop() }, nil
}

func newPool(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	pc.MaxConns = maxConns
	pc.MinConns = 0
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return pool, nil
}

// cpuTime returns the CPU time (user plus system) this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakHeap samples the heap in use until stop is called and returns the highest value.
func peakHeap() (stop func() uint64) {
	done := make(chan struct{})
	result := make(chan uint64, 1)
	go func() {
		var ms runtime.MemStats
		var peak uint64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-done:
				result <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); return <-result }
}
