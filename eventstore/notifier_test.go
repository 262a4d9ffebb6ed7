package eventstore

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/internal/pgtest"
)

// While a notification is on its way, a single-event append on a pool appends alone
// and registers its commit for the next notification, which is sent once the one on
// its way has ended; a failed append registers nothing, nor does an append on a
// session with esgen.notify = off.
func TestNotifierRegistersOnlyCommitsThatWantNotifying(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	n := notifierOf(pool)
	one := EventData{Type: "E", Payload: []byte(`{}`)}

	hold := func() { // a notification on its way, as if another append carried it
		n.mu.Lock()
		n.inflight, n.upTo = true, n.commits
		n.mu.Unlock()
	}
	commits := func() (uint64, uint64) {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.commits, n.covered
	}

	hold()
	if _, err := Append(ctx, pool, "Thing", "a", NoStream, one); err != nil {
		t.Fatal(err)
	}
	if c, _ := commits(); c != 1 {
		t.Fatalf("%d commits registered after one append that did not carry the notification, want 1", c)
	}
	if _, err := Append(ctx, pool, "Thing", "a", NoStream, one); !errors.Is(err, ErrConcurrency) {
		t.Fatalf("err = %v, want a concurrency error", err)
	}
	if c, _ := commits(); c != 1 {
		t.Fatalf("%d commits registered after a failed append, want still 1", c)
	}
	// The notification on its way ends: the registered commit is left uncovered, so a
	// notification is sent for it.
	n.end(pool, true)
	for {
		c, covered := commits()
		if covered >= c {
			break
		}
		n.mu.Lock()
		busy := n.inflight
		n.mu.Unlock()
		if !busy {
			t.Fatalf("commit %d left uncovered (covered %d) with no notification on its way", c, covered)
		}
		time.Sleep(time.Millisecond)
	}

	// A session that turned notifications off with SET: its append is not registered.
	single, err := pgxpool.NewWithConfig(ctx, func() *pgxpool.Config {
		cfg := pool.Config()
		cfg.MaxConns = 1
		cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
			_, err := conn.Exec(ctx, `SET esgen.notify = off`)
			return err
		}
		return cfg
	}())
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()
	ns := notifierOf(single)
	ns.mu.Lock()
	ns.inflight = true
	ns.mu.Unlock()
	if _, err := Append(ctx, single, "Thing", "b", NoStream, one); err != nil {
		t.Fatal(err)
	}
	ns.mu.Lock()
	got := ns.commits
	ns.mu.Unlock()
	if got != 0 {
		t.Fatalf("%d commits registered by a session with esgen.notify = off, want 0", got)
	}
}

// A pool's notifier is dropped once the pool is garbage collected, so that a process
// that makes many pools does not keep them all.
func TestNotifierGoesWithItsPool(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	key := func() weak.Pointer[pgxpool.Pool] {
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		if _, err := Append(ctx, pool, "Thing", "a", Any, EventData{Type: "E", Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		k := weak.Make(pool)
		if _, ok := notifiers.Load(k); !ok {
			t.Fatal("no notifier for a pool that appended")
		}
		return k
	}()
	for i := 0; ; i++ {
		runtime.GC()
		if _, ok := notifiers.Load(key); !ok {
			return
		}
		if i == 200 {
			t.Fatal("the notifier of a closed, unreachable pool is still kept")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
