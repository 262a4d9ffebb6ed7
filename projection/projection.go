package projection

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/generated/dbsqlc"
	"github.com/esgen-dev/esgen/internal/notify"
)

var queries = dbsqlc.New()

// Channel is the LISTEN/NOTIFY channel that esgen_append notifies in every append.
const Channel = notify.Channel

// Handler applies events to a read model. Handle runs inside the batch's transaction:
// whatever it writes through tx commits together with the checkpoint, or not at all.
// It must not commit or roll back tx. A returned error rolls the batch back; the event
// is retried (see [Config.MaxRetries]).
type Handler interface {
	Handle(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error
}

// HandlerFunc adapts a function to [Handler].
type HandlerFunc func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
	return f(ctx, tx, ev)
}

// Projection names a projection and its handler.
type Projection struct {
	// Name identifies the projection's checkpoints; changing it starts from scratch.
	Name string
	// EventTypes are the event types handled; empty means all. The filter runs in SQL.
	EventTypes []string
	// Handler applies each event.
	Handler Handler
	// Partitioned projections may run with more than one partition; others always run
	// with one.
	Partitioned bool
	// Reset clears the read model for a rebuild ([RequestRebuild]): it runs in the
	// transaction that puts the checkpoints back at the start of the stream. A
	// projection without it cannot be rebuilt that way.
	Reset func(ctx context.Context, tx pgx.Tx) error
}

func (p Projection) validate() error {
	if p.Name == "" {
		return errors.New("projection: the projection has no name")
	}
	if p.Handler == nil {
		return fmt.Errorf("projection %s: no handler", p.Name)
	}
	return nil
}

// Defaults of [Config].
const (
	DefaultBatchSize = 1000
	// BatchTarget is the longest transaction that lets an adaptive batch size (a
	// BatchSize left at 0) grow: see [Config.BatchSize].
	BatchTarget             = 50 * time.Millisecond
	DefaultPollInterval     = time.Second
	DefaultMaxRetries       = 5
	DefaultRetryBackoff     = 100 * time.Millisecond
	DefaultMaxRetryBackoff  = 5 * time.Second
	DefaultProgressInterval = 10 * time.Second
	// DefaultShutdownTimeout is below the 30 s that Kubernetes waits after SIGTERM.
	DefaultShutdownTimeout = 25 * time.Second
)

// Config tunes [Run]. The zero value runs partition 0 of 1 with the defaults.
type Config struct {
	// Partitions are the partition keys this process runs, each in its own goroutine
	// with its own checkpoint. Empty: every key of TotalPartitions (unless AutoAssign).
	Partitions []int
	// AutoAssign shares the TotalPartitions partitions among the workers started with
	// it, through leases in PostgreSQL (see the package documentation): each takes a
	// fair share, takes over the partitions of a worker that died once its lease
	// expired, and hands its own over when it stops. Partitions must be empty. Workers
	// with static Partitions and auto-assigned ones are never mixed on a projection
	// ([*AssignmentConflictError]). A partition whose handler fails on an event past
	// its retries stays stopped with its worker, as with KeepStopped, instead of
	// ending Run: it would otherwise move from worker to worker, failing on each.
	AutoAssign bool
	// LeaseTTL is the lease time of auto-assigned partitions (default
	// DefaultLeaseTTL): a worker that stops renewing (it died, lost the network, was
	// paused) loses its partitions after it. A registered static worker counts as gone
	// after it too.
	LeaseTTL time.Duration
	// WorkerID names this worker in the leases and registrations (default
	// DefaultWorkerID: host name and process id). It must be unique among the
	// projection's running workers.
	WorkerID string
	// TotalPartitions is the partition count (0 means 1: unpartitioned), at most
	// MaxPartitions. When it differs from the projection's current count, Run refuses
	// to start with a [*CountMismatchError], unless Rescale is set.
	TotalPartitions int
	// BatchSize is the number of events handled per transaction (a read returns up
	// to max(BatchSize, 5000) events, handled in transactions of BatchSize; see the
	// package documentation). Bigger
	// batches catch up faster, but a batch's transaction holds back every commit-safe
	// reader on the server while it runs (and a failure redoes it), so keep BatchSize
	// times the handler's time per event well under a second.
	//
	// Left at 0, the size adapts: batches start at DefaultBatchSize events, and while
	// a partition catches up, a batch of the full size whose transaction (handling,
	// writes and commit) took at most half of BatchTarget doubles the next one, up to
	// a whole read; one that took longer than BatchTarget halves it, down to
	// DefaultBatchSize; and a batch larger than DefaultBatchSize ends early, after
	// DefaultBatchSize events at least, once its transaction has run longer than
	// BatchTarget (handlers that slow down then hold no longer transactions than
	// with DefaultBatchSize). Fast handlers commit once per read instead of once per
	// DefaultBatchSize events (each commit waits for a WAL flush on a durable server),
	// and slow ones keep the transactions of DefaultBatchSize. A BatchSize that is set
	// is used as it is.
	BatchSize int
	// PollInterval is the longest wait for new events; with notifications on, an
	// append wakes the workers at once. A jitter of up to 10% is added.
	PollInterval time.Duration
	// DisableNotify turns LISTEN off: workers only poll.
	DisableNotify bool
	// MaxRetries is how often a failing handler is retried on the same event before its
	// partition stops (0: DefaultMaxRetries; negative: no retries).
	MaxRetries int
	// RetryBackoff is the first wait before a retry (of a handler or of the
	// database); it doubles up to MaxRetryBackoff, with jitter.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// ProgressInterval is how often each partition logs the number of events it
	// processed (at info level).
	ProgressInterval time.Duration
	// ShutdownTimeout bounds how long the batch in hand may still run once ctx ends;
	// after it, the batch is rolled back.
	ShutdownTimeout time.Duration
	// Rescale switches the projection's layout to TotalPartitions when its current
	// count differs (see the package documentation). Without it, such a count is taken
	// for a typo or a stale deployment and refused.
	Rescale bool
	// KeepStopped keeps a partition whose handler fails on an event past its retries
	// stopped before the event, reported as StateStopped to the Observer, instead of
	// ending Run: the other partitions go on, and it resumes once the event is skipped
	// ([Skip], esgen skip). Run still returns when ctx ends or on other fatal errors.
	KeepStopped bool
	// NoPartitionIndex leaves the partition indexes alone: Run neither builds the
	// index of its partition count nor drops those of counts no longer used (see
	// [EnsurePartitionIndex]). Workers still read through one that exists. For
	// operators who build and drop it themselves (on a very large table, at a time
	// of their choosing); without it, each of N partitions reads the whole stream.
	NoPartitionIndex bool
	// Observer receives the partitions' states, batches and lag (for metrics and
	// health checks; see package projector). Default: none.
	Observer Observer
	// Logger receives the runtime's logs (default: slog.Default()).
	Logger *slog.Logger

	adaptiveBatch  bool               // BatchSize was left at 0: see BatchSize
	batchTarget    time.Duration      // test hook: BatchTarget when set
	onLayoutChange func(LayoutChange) // test hook
	skipLeaseCheck bool               // test hook: batches do not check their lease
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	c.TotalPartitions = cmp.Or(c.TotalPartitions, 1)
	if c.BatchSize == 0 {
		c.BatchSize, c.adaptiveBatch = DefaultBatchSize, true
	}
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.MaxRetries = cmp.Or(c.MaxRetries, DefaultMaxRetries)
	if c.MaxRetries < 0 {
		c.MaxRetries = 0
	}
	c.RetryBackoff = cmp.Or(c.RetryBackoff, DefaultRetryBackoff)
	c.MaxRetryBackoff = cmp.Or(c.MaxRetryBackoff, DefaultMaxRetryBackoff)
	c.ProgressInterval = cmp.Or(c.ProgressInterval, DefaultProgressInterval)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	c.LeaseTTL = cmp.Or(c.LeaseTTL, DefaultLeaseTTL)
	if c.WorkerID == "" {
		c.WorkerID = DefaultWorkerID()
	}
	if len(c.Partitions) == 0 && !c.AutoAssign {
		c.Partitions = make([]int, c.TotalPartitions)
		for i := range c.Partitions {
			c.Partitions[i] = i
		}
	}
	return c
}

func (c Config) validate(p Projection) error {
	if err := checkCount(c.TotalPartitions); err != nil {
		return err
	}
	if !p.Partitioned && c.TotalPartitions > 1 {
		return fmt.Errorf("projection %s is not partitioned: it runs with 1 partition, not %d", p.Name, c.TotalPartitions)
	}
	if c.AutoAssign && len(c.Partitions) > 0 {
		return fmt.Errorf("partition keys %v are given with automatic assignment: give either", c.Partitions)
	}
	if c.LeaseTTL < 0 {
		return fmt.Errorf("lease time must not be negative, got %s", c.LeaseTTL)
	}
	if c.AutoAssign && c.LeaseTTL < MinLeaseTTL {
		return fmt.Errorf("lease time must be at least %s, got %s: a worker renews its leases every third of it, and a shorter lease would move partitions at every pause of a process or the network", MinLeaseTTL, c.LeaseTTL)
	}
	seen := map[int]bool{}
	for _, k := range c.Partitions {
		if err := eventstore.CheckPartition(k, c.TotalPartitions); err != nil {
			return err
		}
		if seen[k] {
			return fmt.Errorf("partition key %d is listed twice", k)
		}
		seen[k] = true
	}
	if c.BatchSize < 1 {
		return fmt.Errorf("batch size must be at least 1, got %d", c.BatchSize)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"poll interval", c.PollInterval}, {"retry backoff", c.RetryBackoff}, {"max retry backoff", c.MaxRetryBackoff},
		{"progress interval", c.ProgressInterval}, {"shutdown timeout", c.ShutdownTimeout}} {
		if d.v < 0 {
			return fmt.Errorf("%s must not be negative, got %s", d.name, d.v)
		}
	}
	return nil
}

// checkPrimary refuses a standby: there the snapshot's list of running transactions
// is empty, so a reader that reads past them would skip their events.
func checkPrimary(ctx context.Context, db DBTX, name string) error {
	var standby bool
	if err := db.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&standby); err != nil {
		return fmt.Errorf("projection %s: connect: %w", name, err)
	}
	if standby {
		return fmt.Errorf("projection %s: %w", name, eventstore.ErrStandby)
	}
	return nil
}

// Run runs the partitions cfg lists of projection p until ctx ends (then it returns
// nil once every partition has finished or rolled back its batch) or until a partition
// fails for good (then it stops the others the same way and returns that error).
//
// Before starting, Run creates the projection and its first layout, or changes the
// layout when cfg.TotalPartitions differs from the current count (see the package
// documentation). Each partition holds at most two pool connections at a time: the
// batch in hand and, while it catches up, the next batch read ahead on a second one. A
// partition reads ahead only when the pool seems to have a connection to spare, and
// never waits for a second connection while it holds one, so a smaller pool is slower
// but cannot stall. Size the pool at twice the partitions plus one for
// the layout and clean-up queries (and for the partition index, see
// [EnsurePartitionIndex]: unless cfg.NoPartitionIndex, Run builds the index of its
// count in the background on that connection when none is usable, and drops those of
// counts no layout has any more); with notifications on, one more dedicated
// connection (outside the pool) listens for appends. With Config.AutoAssign the
// partitions are claimed while Run runs (see [Config.AutoAssign]), and any worker may
// end up running all of them: size the pool at twice the partition count plus two;
// two more dedicated connections renew the leases and listen for released ones.
func Run(ctx context.Context, pool *pgxpool.Pool, p Projection, cfg Config) error {
	cfg = cfg.WithDefaults()
	if err := p.validate(); err != nil {
		return err
	}
	if err := cfg.validate(p); err != nil {
		return fmt.Errorf("projection %s: %w", p.Name, err)
	}
	log := cfg.Logger.With("projection", p.Name)
	if cfg.AutoAssign {
		cfg.KeepStopped = true
	}

	var (
		gen        int64
		registered bool // a static worker's registration, renewed while it runs
	)
	err := retryTransient(ctx, log, cfg, p.Name, "prepare the partition layout", func() error {
		if err := checkPrimary(ctx, pool, p.Name); err != nil {
			return err
		}
		if err := prepareHistory(ctx, pool, p, cfg, log); err != nil { // history.go
			return err
		}
		var err error
		if gen, err = ensureLayout(ctx, pool, p, cfg, log); err != nil {
			return err
		}
		if cfg.AutoAssign {
			if err := register(ctx, pool, p.Name, cfg.WorkerID, true, nil, cfg.LeaseTTL); err != nil {
				return err
			}
			return ensureLeases(ctx, pool, p.Name, gen, cfg.TotalPartitions)
		}
		registered, err = registerStatic(ctx, pool, p.Name, cfg.WorkerID, cfg.Partitions, cfg.LeaseTTL)
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// hardCtx ends ShutdownTimeout after runCtx: it bounds the batch in hand.
	hardCtx, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()
	stopHard := context.AfterFunc(runCtx, func() {
		t := time.AfterFunc(cfg.ShutdownTimeout, hardCancel)
		context.AfterFunc(hardCtx, func() { t.Stop() })
	})
	defer stopHard()

	wake := notify.NewBroadcast()
	var wg sync.WaitGroup
	var keeper *indexKeeper
	if !cfg.NoPartitionIndex {
		keeper = newIndexKeeper(pool, cfg.TotalPartitions, log)
		wg.Go(func() { keeper.run(runCtx) })
	}
	if !cfg.DisableNotify {
		l := &notify.Listener{ConnConfig: pool.Config().ConnConfig, Log: log, Wake: wake,
			Backoff: func(n int) time.Duration { return backoff(cfg.RetryBackoff, cfg.MaxRetryBackoff, n) }}
		wg.Go(func() { l.Run(runCtx) })
	}
	var (
		errMu    sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
		cancel(err)
	}
	runPartition := func(ctx context.Context, key int, fence *leaseFence) error {
		plog := log.With("partition", key, "total_partitions", cfg.TotalPartitions)
		if fence != nil {
			plog = plog.With("worker", cfg.WorkerID)
		}
		w := &worker{
			pool: pool, p: p, cfg: cfg, key: key, total: cfg.TotalPartitions, gen: gen, wake: wake, obs: cfg.Observer, keeper: keeper,
			log: plog, fence: fence,
		}
		return w.run(ctx, hardCtx)
	}
	var workers sync.WaitGroup
	if cfg.AutoAssign {
		a := &assigner{pool: pool, p: p, cfg: cfg, gen: gen, total: cfg.TotalPartitions, id: cfg.WorkerID, ttl: cfg.LeaseTTL,
			log: log, runPartition: runPartition, fail: fail, skipFence: cfg.skipLeaseCheck}
		a.obs, _ = cfg.Observer.(AssignmentObserver)
		workers.Go(func() { a.run(runCtx) })
	} else {
		if registered {
			wg.Go(func() { heartbeatStatic(runCtx, pool, p.Name, cfg.WorkerID, cfg.LeaseTTL, log) })
		}
		for _, key := range cfg.Partitions {
			workers.Go(func() {
				if err := runPartition(runCtx, key, nil); err != nil {
					fail(err)
				}
			})
		}
	}
	workers.Wait()
	cancel(nil)
	wg.Wait()
	return firstErr
}

// Partition tells a handler which partition it runs in; see [CurrentPartition].
type Partition struct {
	Projection string
	Key        int
	Total      int
	Generation int64 // the layout generation (changes with the partition count)
}

type partitionKey struct{}

// CurrentPartition returns the partition of the batch a handler's ctx belongs to.
func CurrentPartition(ctx context.Context) (Partition, bool) {
	p, ok := ctx.Value(partitionKey{}).(Partition)
	return p, ok
}
