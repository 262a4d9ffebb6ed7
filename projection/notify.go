package projection

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Channel is the LISTEN/NOTIFY channel that esgen_append notifies in every append.
const Channel = "esgen_events"

// broadcast: C returns a channel that is closed at the next Broadcast.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func newBroadcast() *broadcast { return &broadcast{ch: make(chan struct{})} }

func (s *broadcast) C() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *broadcast) Broadcast() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.ch)
	s.ch = make(chan struct{})
}

// notifier keeps one dedicated connection listening on [Channel] and wakes every
// partition of the process on each notification. It reconnects with backoff; after a
// reconnect it wakes everyone once, as notifications may have been missed meanwhile.
type notifier struct {
	connConfig *pgx.ConnConfig
	log        *slog.Logger
	sig        *broadcast
	backoff    time.Duration
}

func (n *notifier) run(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := n.listen(ctx, func() { attempt = 0 })
		if ctx.Err() != nil {
			return
		}
		d := backoff(n.backoff, 10*time.Second, attempt)
		n.log.Warn("listener lost its connection; polling until it is back", "error", err, "retry_in", d.Round(time.Millisecond))
		if !sleep(ctx, d) {
			return
		}
	}
}

func (n *notifier) listen(ctx context.Context, connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, n.connConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return err
	}
	connected()
	n.log.Debug("listening for appends", "channel", Channel)
	n.sig.Broadcast()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		n.sig.Broadcast()
	}
}
