package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projection"
	"github.com/esgen-dev/esgen/projector"
)

// ProjectorEnv, set in the environment, makes RunWorkerIfRequested run the failover
// scenario's projector (projector.Main, configured by the usual environment:
// DATABASE_URL, PARTITION_KEY=auto, …) instead of the program.
const ProjectorEnv = "ESGEN_BENCH_PROJECTOR"

// Failover scenario settings.
const (
	failoverProjection = "bench_failover"
	failoverType       = "FailoverProbe"
	failoverPartitions = 8
	failoverWorkers    = 3
)

// failoverProjector is the projection the failover scenario's processes run: each
// handled probe is recorded with the partition, the worker and the server's time.
// The event id is the key, so an event handled twice fails its batch.
func failoverProjector() projection.Projection {
	worker := os.Getenv("WORKER_ID")
	return projection.Projection{
		Name: failoverProjection, Partitioned: true, EventTypes: []string{failoverType},
		Handler: projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
			p, _ := projection.CurrentPartition(ctx)
			_, err := tx.Exec(ctx, `INSERT INTO bench_failover_handled (event_id, partition_key, worker, handled_at)
				VALUES ($1, $2, $3, clock_timestamp())`, ev.EventID, p.Key, worker)
			return err
		}),
	}
}

// runProjectorIfRequested runs the failover projector and exits when ProjectorEnv
// is set.
func runProjectorIfRequested() {
	if os.Getenv(ProjectorEnv) == "" {
		return
	}
	projector.Main(failoverProjector()) // exits
	os.Exit(0)
}

// failoverProc is one projector process of the scenario.
type failoverProc struct {
	id   string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// failover is the state of the failover scenario.
type failover struct {
	r     *runner
	pool  *pgxpool.Pool
	url   string
	bin   string
	ids   [failoverPartitions]string // an aggregate id of each partition
	procs []*failoverProc
	next  int // the number of the next worker
	round int
}

// failoverGroup measures what automatic partition assignment promises: how long the
// partitions of a worker killed with SIGKILL wait for another (the lease time, at the
// default), how long those of a worker stopped with SIGTERM wait (its last batch and
// the hand-over), and how long a joining worker waits for its share.
func (r *runner) failoverGroup(ctx context.Context) error {
	pool, url, done, err := r.database(ctx, GroupFailover, 4)
	if err != nil {
		return err
	}
	defer done()
	if _, err := pool.Exec(ctx, `CREATE TABLE bench_failover_handled (
		event_id uuid PRIMARY KEY, partition_key int NOT NULL, worker text NOT NULL, handled_at timestamptz NOT NULL)`); err != nil {
		return err
	}
	bin := r.cfg.WorkerBinary
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return fmt.Errorf("find this binary for the projector processes: %w", err)
		}
	}
	f := &failover{r: r, pool: pool, url: url, bin: bin}
	for k := range failoverPartitions {
		for i := 0; ; i++ {
			id := fmt.Sprintf("fo-%d-%d", k, i)
			if eventstore.PartitionOf(id, failoverPartitions) == k {
				f.ids[k] = id
				break
			}
		}
	}
	defer f.stopAll()
	for range failoverWorkers {
		if err := f.start(ctx); err != nil {
			return err
		}
	}
	var joins []time.Duration
	joined, err := f.balanced(ctx)
	if err != nil {
		return fmt.Errorf("first start: %w", err)
	}
	r.note("failover: %d projector processes shared %d partitions after %s", failoverWorkers, failoverPartitions, joined.Round(time.Millisecond))

	rounds := 5
	if r.cfg.Quick {
		rounds = 1
	}
	var kills, terms []time.Duration
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		for range rounds {
			d, err := f.stopOne(ctx, sig)
			if err != nil {
				return err
			}
			if sig == syscall.SIGKILL {
				kills = append(kills, d)
			} else {
				terms = append(terms, d)
			}
			if err := f.start(ctx); err != nil {
				return err
			}
			j, err := f.balanced(ctx)
			if err != nil {
				return fmt.Errorf("after a worker joined: %w", err)
			}
			joins = append(joins, j)
		}
	}
	if err := f.checkOnce(ctx); err != nil {
		return err
	}
	ttl := "the default lease"
	for _, row := range []struct {
		name string
		ds   []time.Duration
		note string
	}{
		{"failover after SIGKILL", kills, fmt.Sprintf("%s: until every partition of the killed worker handled an event appended at the kill (%s)", ttl, projection.DefaultLeaseTTL)},
		{"hand-over after SIGTERM", terms, "until every partition of the stopped worker handled an event appended at the SIGTERM"},
		{"rebalance after a worker joins", joins, "from the start of a new worker until it holds a fair share (of 8 partitions, 3 workers)"},
	} {
		res := latencyResult(GroupFailover, row.name, row.ds, sum(row.ds))
		res.EventsPerSec = 0
		res.MaxMs = float64(slices.Max(row.ds)) / float64(time.Millisecond)
		res.Note = fmt.Sprintf("%s; %d times; p99 column = max", row.note, len(row.ds))
		r.add(res)
	}
	return nil
}

func sum(ds []time.Duration) time.Duration {
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return s
}

// start starts one more projector process.
func (f *failover) start(ctx context.Context) error {
	f.next++
	id := fmt.Sprintf("bench-worker-%d", f.next)
	cmd := exec.CommandContext(ctx, f.bin)
	cmd.Env = append(os.Environ(), ProjectorEnv+"=1", "DATABASE_URL="+f.url, "PARTITION_KEY=auto",
		"TOTAL_PARTITIONS="+strconv.Itoa(failoverPartitions), "WORKER_ID="+id, "LOG_LEVEL=info")
	p := &failoverProc{id: id, cmd: cmd, log: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.Cancel = func() error { return cmd.Process.Kill() }
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start projector %s: %w", f.bin, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	f.procs = append(f.procs, p)
	return nil
}

// live returns the processes that have not ended.
func (f *failover) live() []*failoverProc {
	var out []*failoverProc
	for _, p := range f.procs {
		select {
		case <-p.done:
		default:
			out = append(out, p)
		}
	}
	return out
}

func (f *failover) stopAll() {
	for _, p := range f.live() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range f.procs {
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// probe appends one event to every partition and waits until all are handled. It
// returns the worker that handled each partition's event and the latest handling time
// (server clock).
func (f *failover) probe(ctx context.Context, within time.Duration) (map[int]string, time.Time, error) {
	f.round++
	ids := make([]string, 0, failoverPartitions)
	for k, agg := range f.ids {
		id := uuid.New()
		_, err := eventstore.Append(ctx, f.pool, "Failover", agg, eventstore.Any,
			eventstore.EventData{ID: id, Type: failoverType, Payload: fmt.Appendf(nil, `{"round":%d,"partition":%d}`, f.round, k)})
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("append: %w", err)
		}
		ids = append(ids, id.String())
	}
	deadline := time.Now().Add(within)
	for {
		rows, err := f.pool.Query(ctx, `SELECT partition_key, worker, handled_at FROM bench_failover_handled WHERE event_id = ANY($1::uuid[])`, ids)
		if err != nil {
			return nil, time.Time{}, err
		}
		holders := map[int]string{}
		var last time.Time
		for rows.Next() {
			var k int
			var w string
			var at time.Time
			if err := rows.Scan(&k, &w, &at); err != nil {
				rows.Close()
				return nil, time.Time{}, err
			}
			holders[k] = w
			if at.After(last) {
				last = at
			}
		}
		if err := rows.Err(); err != nil {
			return nil, time.Time{}, err
		}
		if len(holders) == failoverPartitions {
			return holders, last, nil
		}
		if time.Now().After(deadline) {
			return nil, time.Time{}, fmt.Errorf("after %s, %d of %d partitions handled their probe (handled by %v); projector logs:\n%s",
				within, len(holders), failoverPartitions, holders, f.logs())
		}
		if sleep(ctx, 10*time.Millisecond); ctx.Err() != nil {
			return nil, time.Time{}, ctx.Err()
		}
	}
}

// balanced probes until every live worker handles a fair share of the partitions and
// returns how long that took.
func (f *failover) balanced(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	for {
		holders, _, err := f.probe(ctx, time.Minute)
		if err != nil {
			return 0, err
		}
		live := f.live()
		share := map[string]int{}
		for _, w := range holders {
			share[w]++
		}
		fair := true
		most := (failoverPartitions + len(live) - 1) / len(live)
		for _, p := range live {
			if n := share[p.id]; n < failoverPartitions/len(live) || n > most {
				fair = false
			}
		}
		if fair {
			return time.Since(start), nil
		}
		if time.Since(start) > time.Minute {
			return 0, fmt.Errorf("no fair share of %d partitions over %d workers after a minute: %v; projector logs:\n%s",
				failoverPartitions, len(live), share, f.logs())
		}
		if sleep(ctx, 100*time.Millisecond); ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
}

// stopOne stops the live worker that holds the most partitions with sig, appends an
// event to every partition at once, and returns the time from the signal until each
// of them was handled.
func (f *failover) stopOne(ctx context.Context, sig syscall.Signal) (time.Duration, error) {
	holders, _, err := f.probe(ctx, time.Minute)
	if err != nil {
		return 0, err
	}
	share := map[string]int{}
	for _, w := range holders {
		share[w]++
	}
	live := f.live()
	victim := slices.MaxFunc(live, func(a, b *failoverProc) int { return share[a.id] - share[b.id] })
	if share[victim.id] == 0 {
		return 0, fmt.Errorf("no live worker holds a partition: %v", holders)
	}
	var t0 time.Time
	if err := f.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&t0); err != nil {
		return 0, err
	}
	if err := victim.cmd.Process.Signal(sig); err != nil {
		return 0, err
	}
	_, last, err := f.probe(ctx, 2*time.Minute)
	if err != nil {
		return 0, fmt.Errorf("after %s to %s: %w", sig, victim.id, err)
	}
	select {
	case <-victim.done:
	case <-time.After(time.Minute):
		return 0, fmt.Errorf("%s did not exit a minute after %s", victim.id, sig)
	}
	if sig == syscall.SIGTERM && !victim.cmd.ProcessState.Success() {
		return 0, fmt.Errorf("%s exited with %s after SIGTERM; its log:\n%s", victim.id, victim.cmd.ProcessState, victim.log.String())
	}
	return last.Sub(t0), nil
}

// checkOnce checks that every probe was handled exactly once (the primary key refuses
// a second row; a missing one would have failed its probe).
func (f *failover) checkOnce(ctx context.Context) error {
	var events, handled int64
	err := f.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM esgen_events WHERE event_type = $1), (SELECT count(*) FROM bench_failover_handled)`,
		failoverType).Scan(&events, &handled)
	if err != nil {
		return err
	}
	if events != handled {
		return fmt.Errorf("failover: %d probes appended, %d handled", events, handled)
	}
	return nil
}

func (f *failover) logs() string {
	var b bytes.Buffer
	for _, p := range f.procs {
		fmt.Fprintf(&b, "--- %s\n%s", p.id, lastLines(p.log.String(), 15))
	}
	return b.String()
}

func lastLines(s string, n int) string {
	lines := bytes.Split([]byte(s), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n"))) + "\n"
}
