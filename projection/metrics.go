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

// AssignmentKind is what happened to an auto-assigned partition's lease.
type AssignmentKind int

const (
	// AssignClaimed: the worker claimed the partition (a free lease, or an expired one:
	// then AssignmentChange.PreviousOwner names the worker that held it).
	AssignClaimed AssignmentKind = iota
	// AssignReleased: the worker gave the partition back after its batch (it stops, or
	// it ran more than its fair share).
	AssignReleased
	// AssignLost: another worker claimed the partition after this worker's lease
	// expired, or the lease could not be renewed in time; the partition stopped at its
	// batch boundary (a batch in hand was rolled back).
	AssignLost
)

func (k AssignmentKind) String() string {
	switch k {
	case AssignClaimed:
		return "claimed"
	case AssignReleased:
		return "released"
	case AssignLost:
		return "lost"
	}
	return "unknown"
}

// AssignmentChange is a change of an auto-assigned partition's owner, as seen by the
// worker it concerns.
type AssignmentChange struct {
	Kind   AssignmentKind
	Worker string // this worker's id
	// PreviousOwner, with AssignClaimed, is the worker whose lease had expired ("": the
	// lease was free): a failover.
	PreviousOwner string
	Epoch         int64  // the lease's fencing token
	Reason        string // why it was released or lost
}

// AssignmentObserver is an [Observer] that also receives the assignment changes of
// auto-assigned partitions ([Config.AutoAssign]); [Run] calls Assignment when the
// Observer has it. A claimed partition is reported before its first state, a released
// or lost one after its last.
type AssignmentObserver interface {
	Observer
	Assignment(p Partition, c AssignmentChange)
}
