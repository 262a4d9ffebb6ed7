package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
	"github.com/esgen-dev/esgen/projection"
)

// historyDB returns a database whose projection "orders" handled its 30 Placed
// events (and passed 5 Shipped ones), and its read model table.
func historyDB(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, `CREATE TABLE orders_rm (event_id uuid PRIMARY KEY, event_type text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for i := range 35 {
		typ := "Placed"
		if i%7 == 6 {
			typ = "Shipped"
		}
		if _, err := eventstore.Append(ctx, pool, "Order", fmt.Sprintf("o-%d", i), eventstore.NoStream, eventstore.EventData{Type: typ, Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	pgtest.WaitFor(t, 2*time.Minute, "the 35 events to be readable", func() bool {
		evs, err := eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{})
		return err == nil && len(evs) == 35
	})
	var resets atomic.Int64
	runOrders(t, pool, &resets, 0, func() bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM esgen_checkpoints WHERE projection = 'orders'
			AND last_position >= (SELECT max(global_position) FROM esgen_events)`).Scan(&n)
		return err == nil && n == 1
	}, "Placed")
	return url, pool
}

// ordersProjection writes each event into orders_rm; Reset truncates it.
func ordersProjection(resets *atomic.Int64, delay time.Duration, types ...string) projection.Projection {
	return projection.Projection{
		Name: "orders", EventTypes: types, Partitioned: true,
		Handler: projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
			time.Sleep(delay)
			_, err := tx.Exec(ctx, `INSERT INTO orders_rm (event_id, event_type) VALUES ($1, $2)`, ev.EventID, ev.Type)
			return err
		}),
		Reset: func(ctx context.Context, tx pgx.Tx) error {
			resets.Add(1)
			_, err := tx.Exec(ctx, `TRUNCATE orders_rm`)
			return err
		},
	}
}

// runOrders runs the orders projection in the background until done holds.
func runOrders(t *testing.T, pool *pgxpool.Pool, resets *atomic.Int64, delay time.Duration, done func() bool, types ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- projection.Run(ctx, pool, ordersProjection(resets, delay, types...), projection.Config{BatchSize: 5, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	pgtest.WaitFor(t, 2*time.Minute, "the orders projection", func() bool {
		select {
		case err := <-errc:
			t.Fatalf("Run returned: %v", err)
		default:
		}
		return done()
	})
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func rows(t *testing.T, pool *pgxpool.Pool, typ string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM orders_rm WHERE event_type = $1`, typ).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRebuildCommand(t *testing.T) {
	t.Parallel()
	url, pool := historyDB(t)
	ctx := context.Background()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"rebuild", "--database", url, "orders"}, &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "refusing without --yes") || !strings.Contains(stderr.String(), "esgen rebuild orders --yes") {
		t.Fatalf("without --yes: exit %d, %s", code, stderr.String())
	}
	stderr.Reset()
	if code := run(ctx, []string{"rebuild", "--yes", "--database", url, "nope"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), `no projection "nope": nothing to rebuild`) {
		t.Errorf("unknown projection: exit %d, %s", code, stderr.String())
	}
	stderr.Reset()
	if code := run(ctx, []string{"rebuild", "--database", url, "--watch", "orders"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "projection orders has no rebuild") {
		t.Errorf("--watch without a rebuild: exit %d, %s", code, stderr.String())
	}

	// Requested: a new generation, pending until a projector starts it.
	stderr.Reset()
	if code := run(ctx, []string{"rebuild", "orders", "--yes", "--no-wait", "--database", url}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "esgen rebuild: requested a rebuild of projection orders (generation 2)") {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := run(ctx, []string{"status", "--database", url}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "  rebuild: generation 2, requested ") || !strings.Contains(stdout.String(), "waiting for a projector to start it") {
		t.Errorf("status of a pending rebuild: exit %d\n%s", code, stdout.String())
	}

	// A projector starts it (slowly); --watch shows the progress until it has caught up.
	var resets atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		runOrders(t, pool, &resets, 30*time.Millisecond, func() bool { return rows(t, pool, "Placed") == 30 && rows(t, pool, "Shipped") == 5 }, "Placed", "Shipped")
	}()
	stdout.Reset()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	code := run(wctx, []string{"rebuild", "--watch", "--interval", "50ms", "--database", url, "orders"}, &stdout, &stderr)
	<-done
	out := stdout.String()
	if code != 0 || !strings.Contains(out, "esgen rebuild: orders: generation 2: caught up, 35 events since ") {
		t.Fatalf("--watch: exit %d\n%s%s", code, out, stderr.String())
	}
	if !strings.Contains(out, " events/s, ETA ") || !strings.Contains(out, "/35 events (") {
		t.Errorf("--watch showed no progress line:\n%s", out)
	}
	if resets.Load() != 1 || rows(t, pool, "Shipped") != 5 {
		t.Errorf("after the rebuild: %d resets, %d Shipped rows", resets.Load(), rows(t, pool, "Shipped"))
	}
	stdout.Reset()
	if code := run(ctx, []string{"status", "--json", "--database", url}, &stdout, &stderr); code != 0 {
		t.Fatal(stderr.String())
	}
	var got struct {
		Projections []projection.ProjectionStatus `json:"projections"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil || len(got.Projections) != 1 {
		t.Fatalf("json: %v\n%s", err, stdout.String())
	}
	if r := got.Projections[0].Rebuild; r == nil || !r.CaughtUp || r.Done != 35 || r.EventsAtStart != 35 || r.Generation != 2 {
		t.Errorf("json rebuild: %+v", r)
	}
}

func TestAcceptSkipCommand(t *testing.T) {
	t.Parallel()
	url, pool := historyDB(t)
	ctx := context.Background()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"accept-skip", "--database", url, "orders"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "name a projection and at least one event type") {
		t.Errorf("without a type: exit %d, %s", code, stderr.String())
	}
	stderr.Reset()
	if code := run(ctx, []string{"accept-skip", "--database", url, "orders", "Placed"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "projection orders handles Placed already") {
		t.Errorf("a handled type: exit %d, %s", code, stderr.String())
	}
	stderr.Reset()
	if code := run(ctx, []string{"accept-skip", "orders", "Shipped", "--database", url}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "projection orders handles Shipped from now on and never the 5 earlier event(s)") {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	// The projector starts, and handles only the new Shipped event.
	if _, err := eventstore.Append(ctx, pool, "Order", "o-new", eventstore.NoStream, eventstore.EventData{Type: "Shipped", Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	var resets atomic.Int64
	runOrders(t, pool, &resets, 0, func() bool { return rows(t, pool, "Shipped") == 1 }, "Placed", "Shipped")
	stdout.Reset()
	if code := run(ctx, []string{"status", "--database", url, "orders"}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "  event type skipped on purpose (esgen accept-skip): 5 Shipped event(s) from before it handled the type were never handled (accepted ") {
		t.Errorf("status after the skip: exit %d\n%s", code, stdout.String())
	}
	if resets.Load() != 0 {
		t.Errorf("accepting a skip reset the read model")
	}
}

// --accept-breaking writes a spec that breaks a published schema, and says so loudly.
func TestGenerateAcceptBreaking(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "go.mod"), "module example.com/shop\n")
	spec := "version: 1\naggregates:\n  Order:\n    events:\n      OrderPlaced: {fields: {%s: string}}\n"
	writeFile(t, filepath.Join(dir, "esgen.yaml"), fmt.Sprintf(spec, "customer_id"))
	if _, stderr, err := runCmd(t, generateCmd, "-C", dir); err != nil {
		t.Fatal(err, stderr)
	}
	writeFile(t, filepath.Join(dir, "esgen.yaml"), fmt.Sprintf(spec, "buyer_id"))
	_, stderr, err := runCmd(t, generateCmd, "-C", dir)
	if err == nil || err.Error() != "1 mistake in esgen.yaml; nothing written" || !strings.Contains(stderr, "esgen.yaml:5:30: aggregates.Order.events.OrderPlaced.fields.buyer_id: field buyer_id of OrderPlaced version 1 is published as customer_id") {
		t.Fatalf("generate of a rename: %v\n%s", err, stderr)
	}
	_, stderr, err = runCmd(t, generateCmd, "-C", dir, "--accept-breaking")
	if err != nil || !strings.HasPrefix(stderr, "WARNING: --accept-breaking: 1 breaking change(s) to published event schemas accepted on purpose:\n  esgen.yaml:5:30: ") ||
		!strings.Contains(stderr, "WARNING: stored events of these versions may no longer decode") {
		t.Errorf("--accept-breaking: %v\n%s", err, stderr)
	}
	if lock := readFile(t, filepath.Join(dir, "esgen.lock.json")); !strings.Contains(lock, `"1": {"buyer_id": "string"}`) {
		t.Errorf("the lock after --accept-breaking:\n%s", lock)
	}
}
