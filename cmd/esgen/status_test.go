package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
	"github.com/esgen-dev/esgen/projection"
)

// projectionDB returns a database with 20 events and a projection "counts" whose
// partition 0 of 2 has caught up (partition 1 never ran).
func projectionDB(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	for i := range 20 {
		if _, err := eventstore.Append(ctx, pool, "Counter", "c-"+string(rune('a'+i)), eventstore.NoStream,
			eventstore.EventData{Type: "Tick", Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	// Status reports the head and the lags as a commit-safe reader sees them, and such
	// a read waits behind other tests' transactions on the server: start once all 20
	// events are readable.
	pgtest.WaitFor(t, 2*time.Minute, "the 20 events to be readable", func() bool {
		evs, err := eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs) == 20
	})
	want := 0
	for i := range 20 {
		if eventstore.PartitionOf("c-"+string(rune('a'+i)), 2) == 0 {
			want++
		}
	}
	handled := make(chan struct{}, 20)
	h := projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
		handled <- struct{}{}
		return nil
	})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- projection.Run(rctx, pool, projection.Projection{Name: "counts", Partitioned: true, Handler: h},
			projection.Config{TotalPartitions: 2, Partitions: []int{0}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	for range want {
		select {
		case <-handled:
		case <-time.After(time.Minute):
			t.Fatal("partition 0 did not catch up")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return url, pool
}

func TestStatusCommand(t *testing.T) {
	t.Parallel()
	url, _ := projectionDB(t)
	ctx := context.Background()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"status", "--database", url}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"projection counts: 2 partition(s), generation 1 (counts used: 2), stream head 20", "PARTITION", "0/2", "1/2", "HOLES", "LAST MOVED"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	stdout.Reset()
	if code := run(ctx, []string{"status", "--json", "--database", url, "counts"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var got struct {
		Projections []projection.ProjectionStatus `json:"projections"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("%v:\n%s", err, stdout.String())
	}
	if len(got.Projections) != 1 {
		t.Fatalf("json: %s", stdout.String())
	}
	st := got.Projections[0]
	if st.Name != "counts" || st.PartitionCount != 2 || st.Head != 20 || len(st.Partitions) != 2 ||
		st.Partitions[0].Lag != 0 || st.Partitions[1].Lag == 0 || st.Lag != st.Partitions[1].Lag ||
		st.Partitions[0].EventsHandled+st.Partitions[1].Lag != 20 {
		t.Errorf("json status: %+v", st)
	}
	stderr.Reset()
	if code := run(ctx, []string{"status", "--database", url, "nope"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), `no projection "nope"`) {
		t.Errorf("unknown projection: exit %d, %s", code, stderr.String())
	}
}

// Without --database and DATABASE_URL, status says so (exit 2).
func TestStatusWithoutDatabase(t *testing.T) {
	t.Setenv("DATABASE_URL", "") // an empty --database falls back to DATABASE_URL
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"status", "--database", ""}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "no database") {
		t.Errorf("no database: exit %d, %s", code, stderr.String())
	}
}

// status and reset on a database esgen's migrations were never applied to say so,
// instead of PostgreSQL's "relation … does not exist".
func TestCommandsWithoutTablesSayRunMigrate(t *testing.T) {
	t.Parallel()
	url := pgtest.NewEmptyDatabase(t)
	want := "esgen's tables are missing: run esgen migrate (or apply sql/migrations with psql)\n"
	for _, args := range [][]string{
		{"status", "--database", url},
		{"status", "--database", url, "balances"},
		{"reset", "--database", url, "--yes", "balances"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr)
		if code != 1 || stderr.String() != "esgen "+args[0]+": "+want {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
}
