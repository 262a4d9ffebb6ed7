package projection

import (
	"time"

	"github.com/esgen-dev/esgen/eventstore"
)

// State is what a partition is doing, as reported to an [Observer].
type State int

const (
	// StateStarting: the partition has not started its batches yet (the layout is
	// being prepared).
	StateStarting State = iota
	// StateRunning: the partition handles events or waits for them.
	StateRunning
	// StateRetrying: the partition retries a failed handler or an unavailable database.
	StateRetrying
	// StateStopped: the partition stopped before an event its handler fails on (and
	// waits for it to be skipped, with [Config.KeepStopped]), or it has ended.
	StateStopped
)

var stateNames = [...]string{"starting", "running", "retrying", "stopped"}

func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return "unknown"
	}
	return stateNames[s]
}

// States are every [State], in order.
var States = []State{StateStarting, StateRunning, StateRetrying, StateStopped}

// RetryCause says what a retrying partition retries.
type RetryCause int

const (
	RetryNone     RetryCause = iota
	RetryHandler             // the handler failed on an event
	RetryDatabase            // the database was unavailable (connection lost, server restarting, …)
)

func (c RetryCause) String() string {
	switch c {
	case RetryHandler:
		return "handler"
	case RetryDatabase:
		return "database"
	}
	return "none"
}

// StateChange is a partition's new state. With StateRetrying it is reported at every
// retry.
type StateChange struct {
	State State
	Cause RetryCause // with StateRetrying
	// Since is when the partition entered this state (for StateRetrying: when the
	// first of the retries in a row began).
	Since time.Time
	// Err is why the partition retries or stopped.
	Err error
}

// Lag is how far a partition is behind the stream.
type Lag struct {
	// Events is the number of committed events of the partition it has not handled:
	// exact after a read that reached the head of the stream (then 0) and when counted
	// (at most every few seconds while the partition is behind), estimated in between.
	Events int64
	// Oldest is the age of the oldest event the partition has not handled (0 when it
	// has handled everything committed).
	Oldest time.Duration
	// Checkpoint is the partition's checkpoint; its Holes are the transactions it
	// passed while they were running.
	Checkpoint eventstore.Cursor
}

// Observer receives what the partitions of [Run] do; the projector turns it into
// Prometheus metrics and health checks (package projector). Its methods are called
// from the partitions' goroutines: they must be safe for concurrent use and return
// quickly. A partition reports its lag at least once per poll interval while it runs,
// retries or stays stopped, so a partition that reports nothing for long is stuck (in
// a handler or a statement).
type Observer interface {
	// PartitionState reports a partition's state when it changes, and every retry.
	PartitionState(p Partition, s StateChange)
	// Batch reports a committed batch: the events handled and skipped on purpose (see
	// [Skip]), and how long the batch took from its first read to its commit.
	Batch(p Partition, handled, skipped int, took time.Duration)
	// Lag reports the partition's lag and checkpoint.
	Lag(p Partition, l Lag)
}

// nopObserver is the Observer of a Run without one.
type nopObserver struct{}

func (nopObserver) PartitionState(Partition, StateChange)    {}
func (nopObserver) Batch(Partition, int, int, time.Duration) {}
func (nopObserver) Lag(Partition, Lag)                       {}
