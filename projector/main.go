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

	"github.com/esgen-dev/esgen/projection"
)

// Main is the whole main function of a projector binary. It reads its settings from
// flags and the environment (flags win):
//
//	--database          DATABASE_URL       PostgreSQL connection URL (required)
//	--partition-key     PARTITION_KEY      the partition(s) to run: 0, a list 0,2, or all (default 0)
//	--total-partitions  TOTAL_PARTITIONS   the partition count (default 1)
//	--batch-size        BATCH_SIZE         events per transaction (default 500)
//	--poll-interval     POLL_INTERVAL      longest wait for new events (default 1s)
//	--no-notify         NO_NOTIFY=1        poll only, no LISTEN
//	--max-retries       MAX_RETRIES        handler retries per event before stopping (default 5)
//	--log-level         LOG_LEVEL          debug, info, warn or error (default info)
//	--log-format        LOG_FORMAT         text or json (default text)
//	--rescale           RESCALE=1          allow switching back to a partition count used before
//
// A bad setting ends the process with a one-line message and exit code 2. SIGINT and
// SIGTERM finish (or, after 30 s, roll back) the batch in hand and exit 0. A fatal
// error (a handler failing on an event past its retries, a changed partition count) is
// logged and ends the process with exit code 1; one that needs a decision first
// (projection.ErrDecisionNeeded: newly handled event types with events behind the
// checkpoints) with exit code 2.
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
	// --partition-key=all), and TotalPartitions the partition count.
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
	code := runMain(ctx, newProjection, newHandlers, os.Args[1:], os.LookupEnv, os.Stderr)
	stop()
	os.Exit(code)
}

// settings is what Main parsed.
type settings struct {
	url       string
	cfg       projection.Config
	logLevel  slog.Level
	logFormat string
}

// usageErr is a bad setting (exit code 2).
type usageErr struct{ msg string }

func (e usageErr) Error() string { return e.msg }

func runMain[H any](ctx context.Context, newProjection func(H) projection.Projection, newHandlers func(context.Context, Deps) (H, error),
	args []string, lookupEnv func(string) (string, bool), stderr io.Writer) int {
	var zero H
	p := newProjection(zero)
	s, err := parseSettings(p, args, lookupEnv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s-projector: %v\n", p.Name, err)
		return 2
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
	if partitions == nil { // --partition-key=all
		for k := range s.cfg.TotalPartitions {
			partitions = append(partitions, k)
		}
	}
	// Two connections per partition (the batch in hand and the next one, read ahead
	// while catching up), plus one for layout and clean-up queries.
	pcfg.MaxConns = int32(2*len(partitions) + 1)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		log.Error("cannot create the connection pool", "error", err)
		return 1
	}
	defer pool.Close()
	log.Info("projector starting", "projection", p.Name, "partition_keys", s.cfg.Partitions, "total_partitions", s.cfg.TotalPartitions)
	deps := Deps{Projection: p.Name, Pool: pool, Logger: log.With("projection", p.Name), Partitions: partitions, TotalPartitions: s.cfg.TotalPartitions}
	h, err := newHandlers(ctx, deps)
	if err != nil {
		log.Error("projector stopped: cannot construct the handlers", "projection", p.Name, "error", err)
		return 1
	}
	p = newProjection(h)
	if err := projection.Run(ctx, pool, p, s.cfg); err != nil {
		log.Error("projector stopped", "projection", p.Name, "error", err)
		if errors.Is(err, projection.ErrDecisionNeeded) {
			return 2 // e.g. newly handled event types with history: rebuild or accept the skip
		}
		return 1
	}
	log.Info("projector stopped", "projection", p.Name)
	return 0
}

func parseSettings(p projection.Projection, args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (settings, error) {
	fs := flag.NewFlagSet(p.Name+"-projector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s-projector [flags]\n\nRuns projection %s. Each flag has an environment variable; flags win over the environment.\n\n", p.Name, p.Name)
		fs.PrintDefaults()
	}
	fs.String("database", "", "PostgreSQL connection URL (env DATABASE_URL)")
	fs.String("partition-key", "", "partition key(s) to run: 0, a list 0,2, or all (env PARTITION_KEY; default 0)")
	fs.String("total-partitions", "", "partition count (env TOTAL_PARTITIONS; default 1)")
	fs.String("batch-size", "", "events per transaction (env BATCH_SIZE; default 500)")
	fs.String("poll-interval", "", "longest wait for new events, e.g. 1s (env POLL_INTERVAL)")
	fs.String("max-retries", "", "handler retries per event before the partition stops (env MAX_RETRIES; default 5)")
	fs.String("log-level", "", "debug, info, warn or error (env LOG_LEVEL; default info)")
	fs.String("log-format", "", "text or json (env LOG_FORMAT; default text)")
	noNotify := fs.Bool("no-notify", false, "poll only, do not LISTEN for appends (env NO_NOTIFY=1)")
	rescale := fs.Bool("rescale", false, "allow switching back to a partition count used before (env RESCALE=1)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return settings{}, err
		}
		return settings{}, usageErr{err.Error()}
	}
	if fs.NArg() > 0 {
		return settings{}, usageErr{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
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
	var s settings
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
		if !p.Partitioned && n > 1 {
			return s, usageErr{fmt.Sprintf("%s: projection %s is not partitioned and runs with 1 partition", name, p.Name)}
		}
		s.cfg.TotalPartitions = n
	}
	total := s.cfg.TotalPartitions
	if v, name, ok := get("partition-key", "PARTITION_KEY"); ok {
		if v == "all" {
			s.cfg.Partitions = nil // every key
		} else {
			for _, part := range strings.Split(v, ",") {
				k, err := strconv.Atoi(strings.TrimSpace(part))
				if err != nil {
					return s, usageErr{fmt.Sprintf("%s is not a partition key: use a number, a list like 0,2, or all", name)}
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
		return s, usageErr{fmt.Sprintf("PARTITION_KEY is not set: with TOTAL_PARTITIONS=%d set it to 0..%d (or a list like 0,1, or all)", total, total-1)}
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
	if v, name, ok := get("poll-interval", "POLL_INTERVAL"); ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return s, usageErr{fmt.Sprintf("%s is not a valid interval: use a positive duration like 500ms or 2s", name)}
		}
		s.cfg.PollInterval = d
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
	s.cfg.DisableNotify = *noNotify || envTrue(lookupEnv, "NO_NOTIFY")
	s.cfg.Rescale = *rescale || envTrue(lookupEnv, "RESCALE")
	return s, nil
}

func envTrue(lookupEnv func(string) (string, bool), name string) bool {
	v, _ := lookupEnv(name)
	b, _ := strconv.ParseBool(v)
	return b
}
