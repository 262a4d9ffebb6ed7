package notify_test

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/internal/notify"
	"github.com/esgen-dev/esgen/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// A broadcast wakes every waiter once; a channel taken after it waits for the next.
func TestBroadcastWakesEveryWaiter(t *testing.T) {
	t.Parallel()
	b := notify.NewBroadcast()
	before := b.C()
	var wg sync.WaitGroup
	for range 3 {
		c := b.C()
		wg.Go(func() { <-c })
	}
	b.Broadcast()
	wg.Wait()
	select {
	case <-before:
	default:
		t.Fatal("a channel taken before the broadcast is still open")
	}
	select {
	case <-b.C():
		t.Fatal("a channel taken after the broadcast is already closed")
	default:
	}
}

// messages is a slog.Handler that passes the message of each record on.
type messages chan string

func (m messages) Enabled(context.Context, slog.Level) bool { return true }
func (m messages) WithAttrs([]slog.Attr) slog.Handler       { return m }
func (m messages) WithGroup(string) slog.Handler            { return m }
func (m messages) Handle(_ context.Context, r slog.Record) error {
	select {
	case m <- r.Message:
	default: // nobody is waiting for it
	}
	return nil
}

// The listener wakes everyone when it connects and at each notification on the
// channel; when its connection is cut it says so, reconnects and wakes everyone again;
// it returns when its context ends.
func TestListenerWakesAndReconnects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = "notify-listener"
	logs := make(messages, 16)
	wake := notify.NewBroadcast()
	l := &notify.Listener{ConnConfig: cfg, Log: slog.New(logs), Wake: wake,
		Backoff: func(int) time.Duration { return 10 * time.Millisecond }}
	woken := func(c <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-c:
		case <-time.After(time.Minute):
			t.Fatalf("not woken %s", what)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	c := wake.C()
	go func() { defer close(done); l.Run(runCtx) }()
	woken(c, "on connect")

	c = wake.C()
	if _, err := pool.Exec(ctx, "SELECT pg_notify($1, '')", notify.Channel); err != nil {
		t.Fatal(err)
	}
	woken(c, "by a notification")

	c = wake.C()
	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'notify-listener'`); err != nil {
		t.Fatal(err)
	}
	woken(c, "after its connection was cut")
	for said := false; !said; {
		select {
		case msg := <-logs:
			said = msg == "listener lost its connection; polling until it is back"
		case <-time.After(time.Minute):
			t.Fatal("no log line about the lost connection")
		}
	}
	deadline := time.Now().Add(time.Minute)
	c = wake.C()
	for {
		if _, err := pool.Exec(ctx, "SELECT pg_notify($1, '')", notify.Channel); err != nil {
			t.Fatal(err)
		}
		select {
		case <-c:
		case <-time.After(50 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("not woken by a notification after reconnecting")
			}
			continue
		}
		break
	}

	cancel()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after its context ended")
	}
}
