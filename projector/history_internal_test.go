package projector

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
	"github.com/esgen-dev/esgen/projection"
)

// A projection that now handles a type with events behind its checkpoints needs a
// decision: the projector exits with code 2, as for a bad setting, and says what to do.
func TestNewlyHandledTypeWithHistoryExits2(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for i, typ := range []string{"Placed", "Shipped"} {
		if _, err := eventstore.Append(ctx, pool, "Order", "o-"+string(rune('a'+i)), eventstore.NoStream, eventstore.EventData{Type: typ, Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	pgtest.WaitFor(t, time.Minute, "both events to be readable", func() bool {
		evs, err := eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{})
		return err == nil && len(evs) == 2
	})
	nop := projection.HandlerFunc(func(context.Context, pgx.Tx, *eventstore.Event) error { return nil })
	// The first run handles Placed and passes the Shipped event; it stops when its
	// checkpoint is at the head.
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan int, 1)
	env := map[string]string{"DATABASE_URL": url}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	go func() {
		done <- runProjection(runCtx, projection.Projection{Name: "orders", EventTypes: []string{"Placed"}, Handler: nop}, nil, lookup, &lockedBuffer{}, &lockedBuffer{})
	}()
	pgtest.WaitFor(t, time.Minute, "the checkpoint to reach the head", func() bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM esgen_checkpoints WHERE projection = 'orders'
			AND last_position >= (SELECT max(global_position) FROM esgen_events)`).Scan(&n)
		return err == nil && n == 1
	})
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("first run: exit %d", code)
	}

	out := &lockedBuffer{}
	code := runProjection(ctx, projection.Projection{Name: "orders", EventTypes: []string{"Placed", "Shipped"}, Handler: nop}, nil, lookup, &lockedBuffer{}, out)
	if code != 2 || !strings.Contains(out.String(), "projection orders now handles Shipped (1 event)") || !strings.Contains(out.String(), "esgen accept-skip orders Shipped") {
		t.Errorf("exit %d\n%s", code, out.String())
	}
}
