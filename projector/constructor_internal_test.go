package projector

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
	"github.com/esgen-dev/esgen/projection"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// lockedBuffer is a log destination written by the projector's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// counter is a handler with a dependency: the table it counts into, named at
// construction.
type counter struct {
	table string
	n     *atomic.Int64
}

func (c counter) Handle(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
	_, err := tx.Exec(ctx, `INSERT INTO `+c.table+` (event_id) VALUES ($1)`, ev.EventID)
	c.n.Add(1)
	return err
}

// The handlers are constructed once, after the settings are parsed, with the pool,
// the logger and the partitions of the process, and then run.
func TestMainWithConstructsTheHandlers(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for i := range 10 {
		if _, err := eventstore.Append(ctx, pool, "Counter", fmt.Sprintf("c-%d", i), eventstore.NoStream,
			eventstore.EventData{Type: "Tick", Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	newProjection := func(h *counter) projection.Projection {
		p := projection.Projection{Name: "counts", Partitioned: true, EventTypes: []string{"Tick"}}
		if h != nil {
			p.Handler = h
		}
		return p
	}
	var n atomic.Int64
	var calls atomic.Int32
	var got Deps
	newHandlers := func(ctx context.Context, deps Deps) (*counter, error) {
		calls.Add(1)
		got = deps
		// The constructor may use the pool, e.g. to prepare its table.
		if _, err := deps.Pool.Exec(ctx, `CREATE TABLE counted (event_id uuid PRIMARY KEY)`); err != nil {
			return nil, err
		}
		deps.Logger.Info("handlers constructed", "partitions", len(deps.Partitions))
		return &counter{table: "counted", n: &n}, nil
	}
	env := map[string]string{"DATABASE_URL": url}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &lockedBuffer{}
	code := make(chan int, 1)
	go func() {
		code <- runMain(runCtx, newProjection, newHandlers, []string{"--partition-key=all", "--total-partitions=2"}, lookup, out, out)
	}()
	deadline := time.Now().Add(time.Minute)
	for n.Load() < 10 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if c := <-code; c != 0 {
		t.Fatalf("exit %d\n%s", c, out.String())
	}
	var rows int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM counted`).Scan(&rows); err != nil || rows != 10 {
		t.Fatalf("counted %d rows (%v), want 10\n%s", rows, err, out.String())
	}
	if calls.Load() != 1 || got.Projection != "counts" || !slices.Equal(got.Partitions, []int{0, 1}) || got.TotalPartitions != 2 {
		t.Errorf("constructed %d times with %+v", calls.Load(), got)
	}
	if !strings.Contains(out.String(), "msg=\"handlers constructed\" projection=counts partitions=2") {
		t.Errorf("the constructor's log line is not in the process's log:\n%s", out.String())
	}
}

// A constructor's error ends the process with exit code 1 and is logged; bad settings
// are reported before any constructor runs.
func TestMainWithConstructorError(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	newProjection := func(h projection.Handler) projection.Projection {
		return projection.Projection{Name: "p", Handler: h}
	}
	var calls atomic.Int32
	newHandlers := func(context.Context, Deps) (projection.Handler, error) {
		calls.Add(1)
		return nil, errors.New("no API key: set BILLING_API_KEY")
	}
	env := map[string]string{"DATABASE_URL": url}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	out := &lockedBuffer{}
	if code := runMain(context.Background(), newProjection, newHandlers, nil, lookup, out, out); code != 1 ||
		!strings.Contains(out.String(), `msg="projector stopped: cannot construct the handlers" projection=p error="no API key: set BILLING_API_KEY"`) {
		t.Errorf("exit %d\n%s", code, out.String())
	}
	out = &lockedBuffer{}
	if code := runMain(context.Background(), newProjection, newHandlers, []string{"--total-partitions=2"}, lookup, out, out); code != 2 || calls.Load() != 1 {
		t.Errorf("bad settings: exit %d, constructor called %d times in all\n%s", code, calls.Load(), out.String())
	}
}

// On a database without esgen's tables the projector says to run esgen migrate.
func TestProjectorWithoutTablesSaysRunMigrate(t *testing.T) {
	t.Parallel()
	url := pgtest.NewEmptyDatabase(t)
	p := projection.Projection{Name: "p", Handler: projection.HandlerFunc(func(context.Context, pgx.Tx, *eventstore.Event) error { return nil })}
	env := map[string]string{"DATABASE_URL": url}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	out := &lockedBuffer{}
	if code := runProjection(context.Background(), p, nil, lookup, out, out); code != 1 ||
		!strings.Contains(out.String(), `error="projection p: esgen's tables are missing: run esgen migrate (or apply sql/migrations with psql)"`) {
		t.Errorf("exit %d\n%s", code, out.String())
	}
}
