package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// isTransient reports whether err is a failure of the connection or the server that
// goes away by retrying: connection loss, server shutdown or restart, serialization
// failure, deadlock, too many connections.
func isTransient(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code[:2] == "08", // connection exception
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // admin/crash shutdown, cannot connect now
			pgErr.Code == "40001", pgErr.Code == "40P01", // serialization failure, deadlock
			pgErr.Code == "25P03",  // idle in transaction too long (a paused auto-assigned worker)
			pgErr.Code[:2] == "53": // insufficient resources (too many connections, …)
			return true
		}
		return false
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	// pgx reports a connection it closed after a network failure this way.
	return errors.Is(err, errConnClosed) || isClosedConnMessage(err)
}

var errConnClosed = errors.New("conn closed")

func isClosedConnMessage(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch e.Error() {
		case "conn closed", "closed pool", "conn busy":
			return true
		}
	}
	return false
}

// backoff returns the wait before attempt n (0-based): base·2ⁿ capped at max, with up
// to 25% jitter either way.
func backoff(base, maxWait time.Duration, n int) time.Duration {
	d := base
	for range n {
		d *= 2
		if d >= maxWait {
			d = maxWait
			break
		}
	}
	d = min(d, maxWait)
	j := time.Duration(rand.Int64N(int64(d)/2+1)) - d/4
	return max(d+j, time.Millisecond)
}

// jitter adds up to 10% to d.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/10+1))
}

// sleep waits d or until ctx ends; it reports whether the full wait passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// retryTransient runs f until it succeeds, fails with a non-transient error, or ctx
// ends. Transient failures are logged at warn level (the first, then every
// dbLogInterval) and reported to the observer as a database retry of every partition
// listed in cfg (of projection name).
func retryTransient(ctx context.Context, log *slog.Logger, cfg Config, name, what string, f func() error) error {
	var since, logged time.Time
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil && attempt > 0 {
			log.Info("database reachable again; continuing", "doing", what, "failed_for", time.Since(since).Round(time.Millisecond).String(), "attempts", attempt)
		}
		if err == nil || !isTransient(err) || ctx.Err() != nil {
			return err
		}
		d := backoff(cfg.RetryBackoff, cfg.MaxRetryBackoff, attempt)
		if attempt == 0 {
			since = time.Now()
		}
		if attempt == 0 || time.Since(logged) >= dbLogInterval {
			logged = time.Now()
			log.Warn("database unavailable, retrying", "doing", what, "error", err, "retry_in", d.Round(time.Millisecond).String())
		}
		for _, k := range cfg.Partitions {
			cfg.Observer.PartitionState(Partition{Projection: name, Key: k, Total: cfg.TotalPartitions},
				StateChange{State: StateRetrying, Cause: RetryDatabase, Since: since, Err: err})
		}
		if !sleep(ctx, d) {
			return err
		}
	}
}

// PanicError is a handler's panic, turned into an error: the partition logs its stack
// once and retries the event like any other failure.
type PanicError struct {
	Value any
	Stack []byte // of the panicking goroutine
}

func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }

// errPermanent marks errors that retrying cannot cure; see [Permanent].
var errPermanent = errors.New("permanent")

type permanentError struct{ err error }

func (e permanentError) Error() string   { return e.err.Error() }
func (e permanentError) Unwrap() []error { return []error{e.err, errPermanent} }

// Permanent marks a handler's error as one that retrying cannot cure (bad data rather
// than a busy resource): the partition stops before the event at once, without the
// retries of Config.MaxRetries. Payloads that do not decode (encoding/json syntax and
// type errors, which the generated dispatchers return wrapped) count as permanent
// without it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// isPermanent reports whether retrying the handler on the same event cannot succeed.
func isPermanent(err error) bool {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	return errors.Is(err, errPermanent) || errors.As(err, &syntax) || errors.As(err, &typ)
}
