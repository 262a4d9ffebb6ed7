// Package notify wakes the partitions of a projector process when events are
// appended: one dedicated connection listens on the channel that esgen_append
// notifies, and each notification is broadcast to every waiter.
//
// It knows the channel and how to listen on it, nothing more: it must not know
// projections, partitions, checkpoints or how the woken side reads events.
package notify

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Channel is the LISTEN/NOTIFY channel that esgen_append notifies in every append.
const Channel = "esgen_events"

// Broadcast wakes every waiter at once: C returns a channel that is closed at the next
// Broadcast.
type Broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// NewBroadcast returns a Broadcast with no waiter woken yet.
func NewBroadcast() *Broadcast { return &Broadcast{ch: make(chan struct{})} }

// C returns a channel that is closed at the next Broadcast. Take it before looking for
// work, so that a broadcast in between is not missed.
func (b *Broadcast) C() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

// Broadcast wakes everyone waiting on a channel from C.
func (b *Broadcast) Broadcast() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.ch)
	b.ch = make(chan struct{})
}

// Listener keeps one dedicated connection listening on a channel ([Channel] unless set) and broadcasts each
// notification to Wake. It reconnects with backoff; after a (re)connect it wakes
// everyone once, as notifications may have been missed meanwhile.
type Listener struct {
	ConnConfig *pgx.ConnConfig
	// Channel is the channel listened on (default [Channel]).
	Channel string
	Log     *slog.Logger
	Wake    *Broadcast
	// Backoff is the wait before reconnect attempt n (0-based, reset by a successful
	// connect).
	Backoff func(attempt int) time.Duration
}

// Run listens until ctx ends.
func (l *Listener) Run(ctx context.Context) {
	var lost, logged time.Time // since when the connection is lost, and when that was last logged
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := l.listen(ctx, func() {
			if !lost.IsZero() {
				l.Log.Info("listener connected again", "lost_for", time.Since(lost).Round(time.Millisecond).String())
			}
			attempt, lost = 0, time.Time{}
		})
		if ctx.Err() != nil {
			return
		}
		d := l.Backoff(attempt)
		if lost.IsZero() {
			lost = time.Now()
		}
		if attempt > 0 && time.Since(logged) < 30*time.Second {
			// Calm: the first failure is logged, then every 30 s at most.
			l.Log.Debug("listener still without a connection", "error", err, "retry_in", d.Round(time.Millisecond).String())
		} else {
			logged = time.Now()
			l.Log.Warn("listener lost its connection; polling until it is back", "error", err, "retry_in", d.Round(time.Millisecond).String())
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (l *Listener) listen(ctx context.Context, connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, l.ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	channel := Channel
	if l.Channel != "" {
		channel = l.Channel
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return err
	}
	connected()
	if channel == Channel {
		l.Log.Debug("listening for appends", "channel", channel)
	} else {
		l.Log.Debug("listening", "channel", channel)
	}
	l.Wake.Broadcast()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		l.Wake.Broadcast()
	}
}
