package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// UsageError is an error in the command line.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Command is `esgen bench`: it parses args, runs the benchmarks and prints the table,
// or the JSON report with --json. Progress lines go to stderr.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	// -h prints the usage on stdout; a bad flag is a UsageError.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "usage: esgen bench [--quick] [--json] [--events N] [--hold D] [--database URL] [--durable] [--cpuprofile FILE] [--only GROUPS]")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Measures esgen against PostgreSQL's raw limit in one run: appends, projection")
		fmt.Fprintln(w, "catch-up, handlers that write (upsert), append-to-handled latency, what a long")
		fmt.Fprintln(w, "transaction costs the readers, and failover of auto-assigned workers.")
		fmt.Fprintln(w, "Without --database or DATABASE_URL it starts a throw-away PostgreSQL cluster (fsync off).")
		fmt.Fprintln(w)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	var cfg Config
	fs.BoolVar(&cfg.Quick, "quick", false, "small sizes (under 30 s), as in CI")
	jsonOut := fs.Bool("json", false, "print the report as JSON instead of a table")
	fs.IntVar(&cfg.CatchUpEvents, "events", 0, fmt.Sprintf("events in the catch-up stream (default %d, --quick %d)", DefaultCatchUpEvents, QuickCatchUpEvents))
	fs.IntVar(&cfg.AppendEvents, "append-events", 0, fmt.Sprintf("events per batched append scenario (default %d, --quick %d)", DefaultAppendEvents, QuickAppendEvents))
	fs.DurationVar(&cfg.Hold, "hold", 0, "how long the gap-safety latency scenarios keep their transaction open (default 3s, --quick 1s)")
	fs.StringVar(&cfg.DatabaseURL, "database", "", "PostgreSQL server to measure (default: $DATABASE_URL, else a throw-away cluster); databases are created on it and dropped")
	fs.BoolVar(&cfg.Durable, "durable", false, "keep fsync and synchronous_commit on in the throw-away cluster")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	only := fs.String("only", "", "comma-separated groups to run: "+strings.Join(Groups, ","))
	fs.StringVar(&cfg.WorkerBinary, "worker", "", "binary for the worker processes (default: this binary)")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return err
		}
		return UsageError{fmt.Errorf("%v (esgen help bench shows the flags)", err)}
	}
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = os.Getenv("DATABASE_URL")
	}
	if fs.NArg() > 0 {
		return UsageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	if !*quiet {
		cfg.Progress = stderr
	}
	if err := cfg.withDefaults().validate(); err != nil {
		return UsageError{err}
	}
	rep, err := Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *jsonOut {
		return rep.WriteJSON(stdout)
	}
	return rep.WriteTable(stdout)
}
