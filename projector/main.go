package projector

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/internal/buildinfo"
	"github.com/esgen-dev/esgen/projection"
)

// Main is the whole main function of a projector binary. It reads its settings from
// flags and the environment (flags win):
//
//	--database          DATABASE_URL       PostgreSQL connection URL (required)
//	--partition-key     PARTITION_KEY      the partition(s) to run: 0, a list 0,2, all, or auto (default 0)
//	--total-partitions  TOTAL_PARTITIONS   the partition count, 1..1024 (default 1)
//	--lease-ttl         LEASE_TTL          with auto: the lease time, after which a dead worker's partitions move (default 6s, at least 1s)
//	--worker-id         WORKER_ID          this worker's name in leases and esgen status (default host name and process id)
//	--batch-size        BATCH_SIZE         events per transaction (default: adapts, 1000 growing to a read of 5000 while transactions stay short)
//	--poll-interval     POLL_INTERVAL      longest wait for new events (default 1s)
//	--no-notify         NO_NOTIFY=true     poll only, no LISTEN
//	--max-retries       MAX_RETRIES        handler retries per event before stopping (default 5)
//	--log-level         LOG_LEVEL          debug, info, warn or error (default info)
//	--log-format        LOG_FORMAT         text or json (default text)
//	--progress-interval PROGRESS_INTERVAL  how often a partition that handled events logs its progress (default 10s)
//	--rescale           RESCALE=true       switch the layout to this partition count if it differs
//	--no-partition-index NO_PARTITION_INDEX=true  neither build nor drop the partition index (projection.Config.NoPartitionIndex)
//	--metrics-addr      METRICS_ADDR       serve /metrics, /healthz and /readyz on this address, e.g. :9090
//	--health-threshold  HEALTH_THRESHOLD   database retries or a batch this long fail /healthz (default 1m)
//	--shutdown-timeout  SHUTDOWN_TIMEOUT   how long the batch in hand may finish after SIGTERM (default 25s)
//	--version                              print the build's versions and exit
//
// With --partition-key=auto, the workers started that way share the
// --total-partitions partitions through leases in PostgreSQL (no other service): each
// runs a fair share, the partitions of a worker that dies move to the others once its
// lease expires, a worker that stops hands its partitions over after its batch, and a
// worker that joins gets its share within seconds (see docs/operations.md). A
// partition whose handler fails past its retries stays stopped with its worker (the
// others go on) until its event is skipped with esgen skip, as with --metrics-addr,
// instead of ending the process (it would move from worker to worker). Workers
// with static keys and auto workers are not mixed on one projection: such a start is
// refused (exit code 2).
//
// Boolean settings take true/false, 1/0, yes/no or on/off. A bad setting ends the
// process with a one-line message and exit code 2, and so does a partition count that
// differs from the projection's (unless --rescale) and a start that needs a decision
// first (projection.ErrDecisionNeeded: newly handled event types with events behind
// the checkpoints; rebuild the projection or accept the skip). SIGINT and SIGTERM
// finish (or, after the shutdown timeout, roll back) the batch in hand and exit 0. A
// fatal error (a handler failing on an event past its retries, a partition count
// changed by another worker, a rebuild requested while it ran) is logged and ends the
// process with exit code 1; with --metrics-addr, a partition whose handler fails stays
// stopped instead (reported by /healthz and the metrics) while the others go on, until
// its event is skipped with esgen skip.
func Main(p projection.Projection) {
	MainWith(func(projection.Handler) projection.Projection { return p },
		func(context.Context, Deps) (projection.Handler, error) { return p.Handler, nil })
}

// Deps is what a projector process hands the constructor of its handlers (see
// [MainWith]): what the runtime has built from its settings by then.
type Deps struct {
	// Projection is the projection's name.
	Projection string
	// Pool is the process's connection pool to DATABASE_URL. It is sized for the
	// runtime (two connections per partition and one more): a handler writes through
	// the batch's transaction it receives, and uses Pool at most for a few queries of
	// its own, e.g. to load a cache while it is constructed.
	Pool *pgxpool.Pool
	// Logger is the process's logger, as --log-level and --log-format set it up, with
	// the projection's name.
	Logger *slog.Logger
	// Partitions are the partition keys the process runs (every key for
	// --partition-key=all; nil for --partition-key=auto, whose partitions are
	// assigned while it runs), and TotalPartitions the partition count.
	Partitions      []int
	TotalPartitions int
}

// MainWith is [Main] for handlers with dependencies, the main of every generated
// cmd/<name>-projector whose handler package declares a constructor:
//
//	projector.MainWith(balancesgen.New, func(ctx context.Context, deps projector.Deps) (balancesgen.Handler, error) {
//		return balances.NewHandlers(ctx, deps)
//	})
//
// Once the settings are parsed and the pool and the logger exist, it calls
// newHandlers with them and runs newProjection(h). An error from newHandlers is
// logged and ends the process with exit code 1. newProjection is also called once
// before, with the zero H, for the projection's name and whether it is partitioned,
// which the settings are checked against: it must not use its argument (the
// generated New functions only keep it).
func MainWith[H any](newProjection func(H) projection.Projection, newHandlers func(ctx context.Context, deps Deps) (H, error)) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, newProjection, newHandlers, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// settings is what Main parsed.
type settings struct {
	url             string
	cfg             projection.Config
	logLevel        slog.Level
	logFormat       string
	metricsAddr     string
	healthThreshold time.Duration
	version         bool
}

// DefaultHealthThreshold is how long a partition may retry the database, or run one
// batch, before /healthz fails.
const DefaultHealthThreshold = time.Minute

// usageErr is a bad setting (exit code 2).
type usageErr struct{ msg string }

func (e usageErr) Error() string { return e.msg }

func runMain[H any](ctx context.Context, newProjection func(H) projection.Projection, newHandlers func(context.Context, Deps) (H, error),
	args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	var zero H
	p := newProjection(zero)
	s, err := parseSettings(p, args, lookupEnv, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s-projector: %v\n", p.Name, err)
		return 2
	}
	if s.version {
		fmt.Fprintf(stdout, "%s-projector: %s\n", p.Name, buildinfo.Read())
		return 0
	}
	opts := &slog.HandlerOptions{Level: s.logLevel}
	var lh slog.Handler = slog.NewTextHandler(stderr, opts)
	if s.logFormat == "json" {
		lh = slog.NewJSONHandler(stderr, opts)
	}
	log := slog.New(lh)
	s.cfg.Logger = log

	pcfg, err := pgxpool.ParseConfig(s.url)
	if err != nil {
		fmt.Fprintf(stderr, "%s-projector: DATABASE_URL: %v\n", p.Name, err)
		return 2
	}
	partitions := s.cfg.Partitions
	if partitions == nil && !s.cfg.AutoAssign { // --partition-key=all
		for k := range s.cfg.TotalPartitions {
			partitions = append(partitions, k)
		}
	}
	var mon *monitor
	if s.metricsAddr != "" {
		mon = newMonitor(p.Name, partitions, s.cfg.TotalPartitions, s.healthThreshold, max(s.cfg.PollInterval, projection.DefaultPollInterval))
		stopServer, addr, err := mon.serve(s.metricsAddr, log)
		if err != nil {
			fmt.Fprintf(stderr, "%s-projector: --metrics-addr=%s: %v\n", p.Name, s.metricsAddr, err)
			return 2
		}
		defer stopServer()
		log.Info("serving metrics and health checks", "addr", addr, "paths", "/metrics /healthz /readyz")
		s.cfg.Observer = mon
		// A partition that stops stays stopped, for /healthz and the metrics to say so.
		s.cfg.KeepStopped = true
	}
	// Two connections per partition (the batch in hand and the next one, read ahead
	// while catching up), plus one for layout and clean-up queries; a projection that
	// is not partitioned may read two batches ahead.
	pcfg.MaxConns = int32(2*len(partitions) + 1)
	if s.cfg.TotalPartitions <= 1 {
		pcfg.MaxConns++
	}
	if s.cfg.AutoAssign {
		// Any share up to every partition, and the releases of leases.
		pcfg.MaxConns = int32(2*s.cfg.TotalPartitions + 2)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		log.Error("cannot create the connection pool", "error", err)
		return 1
	}
	defer pool.Close()
	if s.cfg.AutoAssign {
		log.Info("projector starting", "projection", p.Name, "partition_keys", "auto", "total_partitions", s.cfg.TotalPartitions,
			"worker", s.cfg.WorkerID, "lease_ttl", s.cfg.LeaseTTL.String(), "version", buildinfo.Read().Version)
	} else {
		log.Info("projector starting", "projection", p.Name, "partition_keys", s.cfg.Partitions, "total_partitions", s.cfg.TotalPartitions,
			"version", buildinfo.Read().Version)
	}
	deps := Deps{Projection: p.Name, Pool: pool, Logger: log.With("projection", p.Name), Partitions: partitions, TotalPartitions: s.cfg.TotalPartitions}
	h, err := newHandlers(ctx, deps)
	if err != nil {
		log.Error("projector stopped: cannot construct the handlers", "projection", p.Name, "error", err)
		return 1
	}
	p = newProjection(h)
	if err := projection.Run(ctx, pool, p, s.cfg); err != nil {
		var cm *projection.CountMismatchError
		var ac *projection.AssignmentConflictError
		if errors.As(err, &cm) || errors.As(err, &ac) || errors.Is(err, projection.ErrDecisionNeeded) {
			// A setting that does not fit the projection, or newly handled event types
			// with history (rebuild it or accept the skip): nothing has changed.
			log.Error("projector refused to start", "projection", p.Name, "error", err)
			return 2
		}
		log.Error("projector stopped", "projection", p.Name, "error", err)
		return 1
	}
	log.Info("projector stopped", "projection", p.Name)
	return 0
}

func parseSettings(p projection.Projection, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) (settings, error) {
	fs := flag.NewFlagSet(p.Name+"-projector", flag.ContinueOnError)
	// The flag package prints a parse error and calls Usage on stderr; -h prints the
	// usage on stdout below.
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	usage := func(w io.Writer) {
		fmt.Fprintf(w, "usage: %s-projector [flags]\n\nRuns projection %s. Each flag has an environment variable; flags win over the environment.\nBoolean settings take true/false, 1/0, yes/no or on/off.\n\n", p.Name, p.Name)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	fs.String("database", "", "PostgreSQL connection URL (env DATABASE_URL)")
	fs.String("partition-key", "", "partition key(s) to run: 0, a list 0,2, all, or auto to share the partitions with the other auto workers (env PARTITION_KEY; default 0)")
	fs.String("lease-ttl", "", "with --partition-key=auto: the lease time; a worker that stops renewing loses its partitions after it (env LEASE_TTL; default 6s, at least 1s)")
	fs.String("worker-id", "", "this worker's name in the partition leases and esgen status, unique per running worker (env WORKER_ID; default host name and process id)")
	fs.String("total-partitions", "", fmt.Sprintf("partition count, 1..%d (env TOTAL_PARTITIONS; default 1)", projection.MaxPartitions))
	fs.String("batch-size", "", "events per transaction (env BATCH_SIZE; default: adapts, 1000 growing to a read of 5000 while transactions stay short)")
	fs.String("poll-interval", "", "longest wait for new events, e.g. 1s (env POLL_INTERVAL)")
	fs.String("max-retries", "", "handler retries per event before the partition stops (env MAX_RETRIES; default 5)")
	fs.String("log-level", "", "debug, info, warn or error (env LOG_LEVEL; default info)")
	fs.String("log-format", "", "text or json (env LOG_FORMAT; default text)")
	fs.String("progress-interval", "", "how often each partition logs its progress, when it handled events (env PROGRESS_INTERVAL; default 10s)")
	fs.String("metrics-addr", "", "serve Prometheus /metrics, /healthz and /readyz on this address, e.g. :9090 (env METRICS_ADDR; default off)")
	fs.String("health-threshold", "", "database retries, or a batch, this long make /healthz fail (env HEALTH_THRESHOLD; default 1m)")
	fs.String("shutdown-timeout", "", "after SIGTERM, how long the batch in hand may finish before it is rolled back (env SHUTDOWN_TIMEOUT; default 25s, below Kubernetes' 30s grace period)")
	fs.Var(boolFlag{new(string)}, "no-notify", "poll only, do not LISTEN for appends (env NO_NOTIFY)")
	fs.Var(boolFlag{new(string)}, "no-partition-index", "do not build the index of the partition count, nor drop those of unused counts (env NO_PARTITION_INDEX); workers still use one that exists")
	fs.Var(boolFlag{new(string)}, "rescale", "switch the projection to --total-partitions if its count differs, on purpose (env RESCALE); without it such a worker refuses to start")
	version := fs.Bool("version", false, "print the build's versions and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return settings{}, err
		}
		return settings{}, usageErr{err.Error() + " (-h lists the flags)"}
	}
	if fs.NArg() > 0 {
		return settings{}, usageErr{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	var s settings
	if *version {
		s.version = true
		return s, nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	// get returns a setting and how to name it in a message.
	get := func(flagName, env string) (value, name string, ok bool) {
		if set[flagName] {
			v := fs.Lookup(flagName).Value.String()
			return v, "--" + flagName + "=" + v, true
		}
		if v, ok := lookupEnv(env); ok && v != "" {
			return v, env + "=" + v, true
		}
		return "", "", false
	}
	if v, _, ok := get("database", "DATABASE_URL"); ok {
		s.url = v
	} else {
		return s, usageErr{"DATABASE_URL is not set: set it or pass --database=postgres://user@host:5432/db"}
	}
	s.cfg.TotalPartitions = 1
	if v, name, ok := get("total-partitions", "TOTAL_PARTITIONS"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return s, usageErr{fmt.Sprintf("%s is not a valid partition count: use a whole number of at least 1", name)}
		}
		if n > projection.MaxPartitions {
			return s, usageErr{fmt.Sprintf("%s is more than the %d partitions a projection may have (a typo?)", name, projection.MaxPartitions)}
		}
		if !p.Partitioned && n > 1 {
			return s, usageErr{fmt.Sprintf("%s: projection %s is not partitioned and runs with 1 partition", name, p.Name)}
		}
		s.cfg.TotalPartitions = n
	}
	total := s.cfg.TotalPartitions
	if v, name, ok := get("partition-key", "PARTITION_KEY"); ok {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "all":
			s.cfg.Partitions = nil // every key
		case "auto":
			s.cfg.AutoAssign = true
		default:
			for _, part := range strings.Split(v, ",") {
				k, err := strconv.Atoi(strings.TrimSpace(part))
				if err != nil {
					return s, usageErr{fmt.Sprintf("%s is not a partition key: use a number 0..%d, a list like 0,2, all, or auto", name, total-1)}
				}
				if k < 0 || k >= total {
					if total == 1 {
						return s, usageErr{fmt.Sprintf("%s is out of range: with 1 partition the only key is 0 (set TOTAL_PARTITIONS to partition)", name)}
					}
					return s, usageErr{fmt.Sprintf("%s is out of range: with %d partitions the key must be 0..%d", name, total, total-1)}
				}
				for _, seen := range s.cfg.Partitions {
					if seen == k {
						return s, usageErr{fmt.Sprintf("%s lists partition %d twice", name, k)}
					}
				}
				s.cfg.Partitions = append(s.cfg.Partitions, k)
			}
		}
	} else if total > 1 {
		return s, usageErr{fmt.Sprintf("PARTITION_KEY is not set: with TOTAL_PARTITIONS=%d set it to 0..%d (or a list like 0,1, all, or auto)", total, total-1)}
	} else {
		s.cfg.Partitions = []int{0}
	}
	if v, name, ok := get("batch-size", "BATCH_SIZE"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return s, usageErr{fmt.Sprintf("%s is not a valid batch size: use a whole number of at least 1", name)}
		}
		s.cfg.BatchSize = n
	}
	duration := func(flagName, env string, dst *time.Duration) error {
		if v, name, ok := get(flagName, env); ok {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return usageErr{fmt.Sprintf("%s is not a valid duration: use a positive duration like 500ms, 2s or 1m", name)}
			}
			*dst = d
		}
		return nil
	}
	if err := duration("poll-interval", "POLL_INTERVAL", &s.cfg.PollInterval); err != nil {
		return s, err
	}
	if err := duration("progress-interval", "PROGRESS_INTERVAL", &s.cfg.ProgressInterval); err != nil {
		return s, err
	}
	s.healthThreshold = DefaultHealthThreshold
	if err := duration("health-threshold", "HEALTH_THRESHOLD", &s.healthThreshold); err != nil {
		return s, err
	}
	s.cfg.ShutdownTimeout = projection.DefaultShutdownTimeout
	if err := duration("shutdown-timeout", "SHUTDOWN_TIMEOUT", &s.cfg.ShutdownTimeout); err != nil {
		return s, err
	}
	if err := duration("lease-ttl", "LEASE_TTL", &s.cfg.LeaseTTL); err != nil {
		return s, err
	}
	if s.cfg.LeaseTTL == 0 {
		s.cfg.LeaseTTL = projection.DefaultLeaseTTL
	}
	if s.cfg.AutoAssign && s.cfg.LeaseTTL < projection.MinLeaseTTL {
		return s, usageErr{fmt.Sprintf("the lease time %s is shorter than %s: a worker renews its leases every third of it, and a shorter lease moves partitions at every pause (default %s)", s.cfg.LeaseTTL, projection.MinLeaseTTL, projection.DefaultLeaseTTL)}
	}
	s.cfg.WorkerID = projection.DefaultWorkerID()
	if v, _, ok := get("worker-id", "WORKER_ID"); ok && strings.TrimSpace(v) != "" {
		s.cfg.WorkerID = strings.TrimSpace(v)
	}
	if v, name, ok := get("max-retries", "MAX_RETRIES"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return s, usageErr{fmt.Sprintf("%s is not a valid retry count: use a whole number of at least 0", name)}
		}
		s.cfg.MaxRetries = n
		if n == 0 {
			s.cfg.MaxRetries = -1
		}
	}
	s.logLevel = slog.LevelInfo
	if v, name, ok := get("log-level", "LOG_LEVEL"); ok {
		if err := s.logLevel.UnmarshalText([]byte(v)); err != nil {
			return s, usageErr{fmt.Sprintf("%s is not a log level: use debug, info, warn or error", name)}
		}
	}
	s.logFormat = "text"
	if v, name, ok := get("log-format", "LOG_FORMAT"); ok {
		if v != "text" && v != "json" {
			return s, usageErr{fmt.Sprintf("%s is not a log format: use text or json", name)}
		}
		s.logFormat = v
	}
	if v, _, ok := get("metrics-addr", "METRICS_ADDR"); ok {
		s.metricsAddr = v
	}
	var err error
	if s.cfg.DisableNotify, err = boolSetting(get("no-notify", "NO_NOTIFY")); err != nil {
		return s, err
	}
	if s.cfg.Rescale, err = boolSetting(get("rescale", "RESCALE")); err != nil {
		return s, err
	}
	if s.cfg.NoPartitionIndex, err = boolSetting(get("no-partition-index", "NO_PARTITION_INDEX")); err != nil {
		return s, err
	}
	return s, nil
}

// parseBool reads a boolean setting: strconv.ParseBool's spellings (1, t, true, 0, f,
// false, in any case) and yes/no, on/off.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "yes", "y", "on":
		return true, nil
	case "no", "n", "off":
		return false, nil
	}
	return strconv.ParseBool(strings.TrimSpace(v))
}

// boolSetting reads a boolean setting as get returns it (false when not set).
func boolSetting(v, name string, ok bool) (bool, error) {
	if !ok {
		return false, nil
	}
	b, err := parseBool(v)
	if err != nil {
		return false, usageErr{fmt.Sprintf("%s is not a boolean: use true or false (also 1/0, yes/no, on/off)", name)}
	}
	return b, nil
}

// boolFlag is a boolean flag (--rescale, --rescale=false) that keeps its text, so that
// it is read like the environment variable with parseBool.
type boolFlag struct{ v *string }

func (f boolFlag) String() string {
	if f.v == nil {
		return ""
	}
	return *f.v
}

func (f boolFlag) Set(v string) error {
	if _, err := parseBool(v); err != nil {
		return errors.New("not a boolean: use true or false (also 1/0, yes/no, on/off)")
	}
	*f.v = v
	return nil
}

func (boolFlag) IsBoolFlag() bool { return true }
