package projection_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if workerDir != "" {
		os.RemoveAll(workerDir)
	}
	os.Exit(code)
}

// readModelSchema is the read model of the test worker (internal/testworker).
const readModelSchema = `
CREATE TABLE rm_events (
    event_id          uuid PRIMARY KEY,
    aggregate_id      text    NOT NULL,
    aggregate_version bigint  NOT NULL,
    apply_seq         bigint  NOT NULL,
    partition_key     integer NOT NULL,
    total_partitions  integer NOT NULL,
    generation        bigint  NOT NULL,
    global_position   bigint  NOT NULL,
    worker            text    NOT NULL
);
CREATE TABLE rm_seq (aggregate_id text PRIMARY KEY, n bigint NOT NULL);`

func newPool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// privateReadModelDB starts a private server for one test (it skips the test where
// there are no server binaries) and returns it with a migrated database that has the
// test worker's read model. Tests that restart the server or hold transactions open
// for long use one, so that they disturb no other test.
func privateReadModelDB(t *testing.T, why string) (*pgtest.Server, string, *pgxpool.Pool) {
	t.Helper()
	if _, err := pgtest.BinDir(); err != nil {
		t.Skipf("needs PostgreSQL server binaries for a private server (%s): %v", why, err)
	}
	srv, err := pgtest.StartPrivate(context.Background(), pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	url := pgtest.NewDatabaseOn(t, srv)
	pool := newPool(t, url)
	if _, err := pool.Exec(context.Background(), readModelSchema); err != nil {
		t.Fatal(err)
	}
	return srv, url, pool
}

// newReadModelDB returns a migrated database with the test worker's read model.
func newReadModelDB(t testing.TB) (string, *pgxpool.Pool) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	pool := newPool(t, url)
	if _, err := pool.Exec(context.Background(), readModelSchema); err != nil {
		t.Fatal(err)
	}
	return url, pool
}

var (
	workerOnce sync.Once
	workerDir  string
	workerBin  string
	workerErr  error
)

// workerBinary builds internal/testworker once per test run.
func workerBinary(t testing.TB) string {
	t.Helper()
	workerOnce.Do(func() {
		workerDir, workerErr = os.MkdirTemp("", "esgen-testworker-")
		if workerErr != nil {
			return
		}
		workerBin = filepath.Join(workerDir, "worker")
		out, err := exec.Command("go", "build", "-o", workerBin, "./internal/testworker").CombinedOutput()
		if err != nil {
			workerErr = fmt.Errorf("build the test worker: %v\n%s", err, out)
		}
	})
	if workerErr != nil {
		t.Fatal(workerErr)
	}
	return workerBin
}

// proc is a running test worker.
type proc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	code int
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output is what the worker logged so far (JSON lines).
func (p *proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// startWorker starts a test worker with the given settings (env-style KEY=VALUE).
func startWorker(t *testing.T, name, url string, env ...string) *proc {
	t.Helper()
	bin := workerBinary(t)
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin)
	p.cmd.Env = append(os.Environ(), "DATABASE_URL="+url, "LOG_FORMAT=json", "TESTWORKER_ID="+name, "POLL_INTERVAL=200ms")
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout = p
	p.cmd.Stderr = p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- %s (exit %d) log tail:\n%s", p.name, p.code, tailLines(p.Output(), 15))
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and returns the exit code.
func (p *proc) stop(t *testing.T) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.wait(t, time.Minute)
}

func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s did not exit within %s; log tail:\n%s", p.name, d, tailLines(p.Output(), 20))
		return -1
	}
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logLines returns the worker's JSON log records whose msg is msg.
func (p *proc) logLines(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(p.Output(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// writers append events with commits out of order: each transaction appends 1-3
// events to a random aggregate, waits a little and commits, in parallel. Transient
// errors (a server restart) are retried.
type writers struct {
	appended atomic.Int64 // events whose commit was acknowledged
	errs     atomic.Int64 // transient errors retried
}

func (w *writers) run(ctx context.Context, t testing.TB, pool *pgxpool.Pool, n, events, aggregates int, pause time.Duration) {
	var wg sync.WaitGroup
	per := events / n
	for i := range n {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			done := 0
			for done < per && ctx.Err() == nil {
				k := min(1+rng.IntN(3), per-done)
				agg := fmt.Sprintf("agg-%d", rng.IntN(aggregates))
				evs := make([]eventstore.EventData, k)
				for j := range evs {
					evs[j] = eventstore.EventData{Type: "Tick", Payload: []byte(fmt.Sprintf(`{"w":%d,"n":%d}`, i, done+j))}
				}
				err := func() error {
					tx, err := pool.Begin(ctx)
					if err != nil {
						return err
					}
					defer tx.Rollback(context.Background())
					if _, err := eventstore.Append(ctx, tx, "Counter", agg, eventstore.Any, evs...); err != nil {
						return err
					}
					if pause > 0 {
						time.Sleep(time.Duration(rng.Int64N(int64(pause))))
					}
					if ctx.Err() != nil {
						return ctx.Err()
					}
					// Not ctx: a COMMIT cut off by the cancellation may still commit on
					// the server after run returned, behind the test's final checks.
					return tx.Commit(context.Background())
				}()
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					w.errs.Add(1)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				done += k
				w.appended.Add(int64(k))
			}
		})
	}
	wg.Wait()
}

// count runs a count query, retrying for a while when the server is restarting.
func count(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	var err error
	for range 100 {
		if err = pool.QueryRow(context.Background(), sql, args...).Scan(&n); err == nil {
			return n
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %v", sql, err)
	return 0
}

// withAppName sets application_name on a connection URL, so that a worker's
// sessions can be found in pg_stat_activity.
func withAppName(t testing.TB, raw, name string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	pgtest.WaitFor(t, d, what, cond)
}

// waitApplied waits until the read model holds as many events as the store.
func waitApplied(t testing.TB, pool *pgxpool.Pool, d time.Duration, alive func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		applied := count(t, pool, "SELECT count(*) FROM rm_events")
		stored := count(t, pool, "SELECT count(*) FROM esgen_events")
		if applied >= stored {
			return
		}
		if alive != nil {
			if err := alive(); err != nil {
				t.Fatalf("waiting for the read model (%d of %d events): %v", applied, stored, err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: %d of %d events applied", d, applied, stored)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkReadModel checks that every stored event was applied exactly once, each
// aggregate in version order, by the partition its FNV-1a hash names under the count
// it ran with.
func checkReadModel(t testing.TB, pool *pgxpool.Pool) int64 {
	t.Helper()
	stored := count(t, pool, "SELECT count(*) FROM esgen_events")
	applied := count(t, pool, "SELECT count(*) FROM rm_events")
	missing := count(t, pool, "SELECT count(*) FROM esgen_events e WHERE NOT EXISTS (SELECT 1 FROM rm_events r WHERE r.event_id = e.event_id)")
	extra := count(t, pool, "SELECT count(*) FROM rm_events r WHERE NOT EXISTS (SELECT 1 FROM esgen_events e WHERE r.event_id = e.event_id)")
	if missing != 0 || extra != 0 || applied != stored {
		t.Fatalf("read model: %d applied, %d stored, %d missing, %d unknown", applied, stored, missing, extra)
	}
	// rm_seq counts applications per aggregate: the n-th application must be version n.
	if bad := count(t, pool, "SELECT count(*) FROM rm_events WHERE apply_seq <> aggregate_version"); bad != 0 {
		t.Fatalf("%d events applied out of version order", bad)
	}
	if bad := count(t, pool, "SELECT count(*) FROM rm_seq s WHERE s.n <> (SELECT max(aggregate_version) FROM esgen_events e WHERE e.aggregate_id = s.aggregate_id)"); bad != 0 {
		t.Fatalf("%d aggregates applied a different number of times than they have events", bad)
	}
	if bad := count(t, pool, `SELECT count(*) FROM rm_events r JOIN esgen_events e USING (event_id)
		WHERE r.partition_key <> e.partition_hash % r.total_partitions`); bad != 0 {
		t.Fatalf("%d events handled by a partition that FNV-1a does not name", bad)
	}
	return stored
}
