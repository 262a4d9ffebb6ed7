// Package demo runs esgen end to end: a throw-away PostgreSQL (or DATABASE_URL), the
// migrations (esgen's and the demo's read model, sql/migrations/100_demo_balances.sql),
// concurrent writers appending typed events, and the generated balances projection run
// as separate worker processes, one per partition, followed by a check that every event
// was handled exactly once by the partition FNV-1a names.
//
// The worker processes are the demo's generated projector, cmd/balances-projector,
// built with go build from esgen's source and started with PARTITION_KEY=k: the same
// binary N times, as in production. Its main hands the process's partition to the
// handlers through their constructor, NewHandlers.
package demo

//go:generate go run github.com/esgen-dev/esgen/cmd/esgen generate -f esgen.yaml

import (
	"bufio"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/internal/pgtest"
	"github.com/esgen-dev/esgen/migrate"
)

// migrations holds the demo's migrations folder: esgen's copies and the read model's.
//
//go:embed sql/migrations/*.sql
var migrations embed.FS

// Schema is the PostgreSQL schema the demo works in, so that it never touches the
// tables of a database given by DATABASE_URL.
const Schema = "esgen_demo"

// Options configure a demo run. Zero values take the defaults.
type Options struct {
	DatabaseURL string // "" starts a throw-away server
	Partitions  int    // worker processes (default 4)
	Accounts    int    // aggregates (default 300)
	Events      int    // events in all, at least one per account (default 3000)
	Writers     int    // concurrent writers (default 8)
	Timeout     time.Duration
	// Projector is the worker binary, the demo's generated projector (default: built
	// from internal/demo/cmd/balances-projector with go build, in a temporary folder).
	Projector string
	Stdout    io.Writer
	Stderr    io.Writer
	// ShowEvents is how many handled events each worker prints (default 3).
	ShowEvents int
}

func (o Options) withDefaults() Options {
	if o.Partitions <= 0 {
		o.Partitions = 4
	}
	if o.Accounts <= 0 {
		o.Accounts = 300
	}
	if o.Events < o.Accounts {
		o.Events = max(o.Accounts*10, 3000)
	}
	if o.Writers <= 0 {
		o.Writers = 8
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.ShowEvents == 0 {
		o.ShowEvents = 3
	}
	return o
}

// Report is what the demo verified.
type Report struct {
	Appended           int
	Handled            int
	PerPartition       []int
	Accounts           int
	MisroutedAccounts  int // accounts handled by a partition other than FNV-1a's
	SplitAccounts      int // accounts handled by more than one partition
	BalanceMismatches  int // read-model balances that differ from the writers' sums
	WorkerExitFailures int
}

// OK reports whether every check passed.
func (r *Report) OK() bool {
	return r.Appended == r.Handled && r.MisroutedAccounts == 0 && r.SplitAccounts == 0 &&
		r.BalanceMismatches == 0 && r.WorkerExitFailures == 0
}

// Run runs the demo and returns what it verified. It stops everything it started
// before returning, also when ctx is cancelled (Ctrl+C).
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts = opts.withDefaults()
	opts.Stdout, opts.Stderr = serialize(opts.Stdout, opts.Stderr)
	out := opts.Stdout
	start := time.Now()

	var server *pgtest.Server
	var err error
	if opts.DatabaseURL != "" {
		fmt.Fprintln(out, "esgen demo: using DATABASE_URL, schema "+Schema)
		server, err = pgtest.External(ctx, opts.DatabaseURL)
	} else {
		fmt.Fprintln(out, "esgen demo: starting a throw-away PostgreSQL (set DATABASE_URL to use your own)")
		server, err = pgtest.StartPrivate(ctx, pgtest.Options{})
		if err == nil {
			fmt.Fprintf(out, "esgen demo: server in %s, removed at exit\n", server.Dir())
		}
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := server.Stop(); err != nil {
			fmt.Fprintln(opts.Stderr, "esgen demo:", err)
		}
	}()
	dbURL, err := withSearchPath(server.URL, Schema)
	if err != nil {
		return nil, err
	}
	if err := prepare(ctx, server.URL, dbURL); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "esgen demo: migrated schema %s (%s)\n", Schema, time.Since(start).Round(time.Millisecond))

	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return nil, fmt.Errorf("demo: connect: %w", err)
	}
	defer pool.Close()

	exe := opts.Projector
	if exe == "" {
		fmt.Fprintln(out, "esgen demo: building the projector, internal/demo/cmd/balances-projector")
		dir, err := os.MkdirTemp("", "esgen-demo-")
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		defer os.RemoveAll(dir)
		if exe, err = BuildProjector(ctx, dir); err != nil {
			return nil, err
		}
	}
	workers, err := startWorkers(exe, dbURL, opts)
	if err != nil {
		return nil, err
	}
	stopped := false
	stopWorkers := func() int {
		if stopped {
			return 0
		}
		stopped = true
		return workers.stop(opts.Stderr)
	}
	defer stopWorkers()

	fmt.Fprintf(out, "esgen demo: %d writers appending %d events to %d accounts while %d workers project them\n",
		opts.Writers, opts.Events, opts.Accounts, opts.Partitions)
	var appended atomic.Int64
	var expect *expectation
	writeErr := make(chan error, 1)
	go func() {
		var err error
		expect, err = write(ctx, pool, opts, &appended)
		writeErr <- err
	}()
	if err := waitCaughtUp(ctx, pool, &appended, writeErr, opts); err != nil {
		return nil, err
	}
	report := &Report{Appended: expect.events, PerPartition: make([]int, opts.Partitions)}
	report.WorkerExitFailures = stopWorkers()
	if err := verify(ctx, pool, expect, report); err != nil {
		return nil, err
	}
	printReport(out, report, opts)
	fmt.Fprintf(out, "esgen demo: done in %s\n", time.Since(start).Round(100*time.Millisecond))
	if !report.OK() {
		return report, errors.New("demo: verification failed (see above)")
	}
	return report, nil
}

// withSearchPath adds search_path to a connection URL.
func withSearchPath(raw, schema string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("demo: parse database URL: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// BuildProjector builds the demo's generated projector, cmd/balances-projector, from
// esgen's source into dir and returns the binary's path. The source is where this
// package was compiled from: a checkout of esgen, or the module cache.
func BuildProjector(ctx context.Context, dir string) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return "", errors.New("demo: esgen's source is unknown (built with -trimpath?): run the demo from a checkout with go run ./cmd/esgen demo")
	}
	root := filepath.Dir(filepath.Dir(filepath.Dir(file))) // of internal/demo/demo.go
	if _, err := os.Stat(filepath.Join(root, "internal", "demo", "cmd", "balances-projector", "main.go")); err != nil {
		return "", fmt.Errorf("demo: the projector's source is not at %s: run the demo from a checkout with go run ./cmd/esgen demo (%v)", root, err)
	}
	exe := filepath.Join(dir, "balances-projector")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", exe, "./internal/demo/cmd/balances-projector")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("demo: go build ./internal/demo/cmd/balances-projector in %s: %v\n%s", root, err, out)
	}
	return exe, nil
}

// prepare recreates the demo schema and applies esgen's migrations and the demo's own,
// the read model.
func prepare(ctx context.Context, adminURL, dbURL string) error {
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("demo: connect: %w", err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if _, err := admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+Schema+" CASCADE; CREATE SCHEMA "+Schema); err != nil {
		return fmt.Errorf("demo: create schema %s: %w", Schema, err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("demo: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	own, err := migrate.LoadModule(migrations, "sql/migrations")
	if err != nil {
		return err
	}
	_, err = migrate.Up(ctx, conn, append(migrate.All(), own...))
	return err
}

type workerSet struct {
	cmds []*exec.Cmd
	done []chan error
	logs sync.WaitGroup
}

func startWorkers(exe, dbURL string, opts Options) (*workerSet, error) {
	ws := &workerSet{}
	for k := range opts.Partitions {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(),
			"DATABASE_URL="+dbURL,
			"PARTITION_KEY="+strconv.Itoa(k),
			"TOTAL_PARTITIONS="+strconv.Itoa(opts.Partitions),
			"LOG_LEVEL=debug",
		)
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Setpgid:   true,            // Ctrl+C reaches the demo, which stops the workers itself
			Pdeathsig: syscall.SIGTERM, // and they never outlive it
		}
		r, w := io.Pipe()
		cmd.Stdout, cmd.Stderr = w, w
		if err := cmd.Start(); err != nil {
			ws.stop(opts.Stderr)
			return nil, fmt.Errorf("demo: start worker %d: %w", k, err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait(); w.Close() }()
		ws.cmds = append(ws.cmds, cmd)
		ws.done = append(ws.done, done)
		ws.logs.Add(1)
		go func() {
			defer ws.logs.Done()
			relayLog(r, k, opts)
		}()
	}
	return ws, nil
}

// lockedWriter passes each Write to w while holding mu. The demo writes from the
// writers' progress loop, one log relay per worker and the shutdown code at once.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// serialize wraps stdout and stderr so that concurrent writes to them never overlap.
// They share one lock, since they are often the same writer. Each line is written
// with one Fprintf, so lines stay whole.
func serialize(stdout, stderr io.Writer) (io.Writer, io.Writer) {
	mu := new(sync.Mutex)
	return lockedWriter{mu, stdout}, lockedWriter{mu, stderr}
}

// relayLog prints a worker's log lines with its partition in front; of the per-event
// debug lines it prints the first few and then counts the rest.
func relayLog(r io.Reader, k int, opts Options) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	shown, hidden := 0, 0
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "level=DEBUG") {
			if shown >= opts.ShowEvents {
				hidden++
				continue
			}
			shown++
		}
		fmt.Fprintf(opts.Stdout, "[worker %d] %s\n", k, line)
	}
	if hidden > 0 {
		fmt.Fprintf(opts.Stdout, "[worker %d] (%d more per-event debug lines not shown)\n", k, hidden)
	}
}

// stop sends SIGTERM to every worker, waits for them, and returns how many did not exit 0.
func (ws *workerSet) stop(stderr io.Writer) int {
	for _, c := range ws.cmds {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	failures := 0
	for k, d := range ws.done {
		select {
		case err := <-d:
			if err != nil {
				fmt.Fprintf(stderr, "esgen demo: worker %d: %v\n", k, err)
				failures++
			}
		case <-time.After(20 * time.Second):
			_ = ws.cmds[k].Process.Kill()
			<-d
			fmt.Fprintf(stderr, "esgen demo: worker %d did not stop within 20s; killed\n", k)
			failures++
		}
	}
	ws.logs.Wait()
	return failures
}

// waitCaughtUp prints a progress line until the writers are done and the read model
// holds every event they appended.
func waitCaughtUp(ctx context.Context, pool *pgxpool.Pool, appended *atomic.Int64, writeErr <-chan error, opts Options) error {
	deadline := time.Now().Add(opts.Timeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	writing := true
	last := ""
	for {
		var handled int64
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM demo_handled_events`).Scan(&handled); err != nil {
			return fmt.Errorf("demo: progress: %w", err)
		}
		total := appended.Load()
		line := fmt.Sprintf("esgen demo: progress: %d appended, %d handled", total, handled)
		if !writing {
			line = fmt.Sprintf("esgen demo: progress: %d/%d handled (%d%%)", handled, total, handled*100/max(total, 1))
		}
		if line != last {
			fmt.Fprintln(opts.Stdout, line)
			last = line
		}
		if !writing && handled >= total {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: only %d of %d events handled after %s", handled, total, opts.Timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-writeErr:
			if err != nil {
				return err
			}
			writing = false
			fmt.Fprintf(opts.Stdout, "esgen demo: writers done: %d events appended\n", appended.Load())
		case <-tick.C:
		}
	}
}

func verify(ctx context.Context, pool *pgxpool.Pool, expect *expectation, r *Report) error {
	rows, err := pool.Query(ctx, `SELECT partition_key, count(*) FROM demo_handled_events GROUP BY 1 ORDER BY 1`)
	if err != nil {
		return fmt.Errorf("demo: verify: %w", err)
	}
	for rows.Next() {
		var k, n int
		if err := rows.Scan(&k, &n); err != nil {
			return fmt.Errorf("demo: verify: %w", err)
		}
		if k >= 0 && k < len(r.PerPartition) {
			r.PerPartition[k] = n
		}
		r.Handled += n
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("demo: verify: %w", err)
	}
	type acct struct {
		id        string
		parts     int
		partition int
		balance   int64
	}
	rows, err = pool.Query(ctx, `
		SELECT h.account_id, count(DISTINCT h.partition_key), min(h.partition_key), coalesce(max(b.balance), 0)
		FROM demo_handled_events h LEFT JOIN demo_balances b USING (account_id)
		GROUP BY h.account_id`)
	if err != nil {
		return fmt.Errorf("demo: verify: %w", err)
	}
	accts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (acct, error) {
		var a acct
		err := row.Scan(&a.id, &a.parts, &a.partition, &a.balance)
		return a, err
	})
	if err != nil {
		return fmt.Errorf("demo: verify: %w", err)
	}
	r.Accounts = len(accts)
	for _, a := range accts {
		if a.parts > 1 {
			r.SplitAccounts++
		}
		if a.partition != partitionOf(a.id, len(r.PerPartition)) {
			r.MisroutedAccounts++
		}
		if a.balance != expect.balances[a.id] {
			r.BalanceMismatches++
		}
	}
	return nil
}

func printReport(w io.Writer, r *Report, opts Options) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "verification")
	for k, n := range r.PerPartition {
		fmt.Fprintf(w, "  partition %d: %5d events\n", k, n)
	}
	check := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "FAILED"
	}
	fmt.Fprintf(w, "  %-60s %s\n", fmt.Sprintf("total: %d handled, %d appended", r.Handled, r.Appended), check(r.Handled == r.Appended))
	fmt.Fprintf(w, "  %-60s %s\n", fmt.Sprintf("accounts: %d, each handled by one partition (%d split)", r.Accounts, r.SplitAccounts), check(r.SplitAccounts == 0))
	fmt.Fprintf(w, "  %-60s %s\n", fmt.Sprintf("routing: the partition FNV-1a names (%d misrouted)", r.MisroutedAccounts), check(r.MisroutedAccounts == 0))
	fmt.Fprintf(w, "  %-60s %s\n", fmt.Sprintf("balances: equal to the writers' sums (%d differ)", r.BalanceMismatches), check(r.BalanceMismatches == 0))
	fmt.Fprintf(w, "  %-60s %s\n", fmt.Sprintf("workers: %d of %d stopped cleanly on SIGTERM", opts.Partitions-r.WorkerExitFailures, opts.Partitions), check(r.WorkerExitFailures == 0))
}
