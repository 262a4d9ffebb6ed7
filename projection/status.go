package projection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/readsql"
)

// DBTX is what [Status] and [Reset] need of a connection: *pgx.Conn, *pgxpool.Pool and
// pgx.Tx all have it.
type DBTX = eventstore.DBTX

// ProjectionStatus is a projection's layout and the state of its partitions.
type ProjectionStatus struct {
	Name           string    `json:"name"`
	PartitionCount int       `json:"partition_count"`
	Generation     int64     `json:"generation"`
	PreviousCount  int       `json:"previous_count,omitempty"` // 0: never changed
	CountsUsed     []int     `json:"counts_used"`
	EventTypes     []string  `json:"event_types"` // empty: all
	ChangedAt      time.Time `json:"changed_at"`
	// Head is the newest global position of a committed event.
	Head int64 `json:"head"`
	// Lag is the sum of the partitions' lags.
	Lag        int64             `json:"lag"`
	Partitions []PartitionStatus `json:"partitions"`
	// Retired are the checkpoints of earlier layouts still being carried over: events
	// at or before them in their partition are skipped by the current layout. Empty
	// once the change of the partition count is complete.
	Retired []PartitionStatus `json:"retired,omitempty"`
	// Rebuild is the projection's last rebuild (nil: none), SkippedTypes the event
	// types whose earlier events it never handled, on purpose (history.go).
	Rebuild      *RebuildStatus `json:"rebuild,omitempty"`
	SkippedTypes []SkippedType  `json:"skipped_types,omitempty"`
	// Workers are the registered workers (live ones, and dead ones until they are
	// cleaned up): auto-assigned ones and static ones.
	Workers []WorkerStatus `json:"workers,omitempty"`
}

// WorkerStatus is a registered worker of a projection.
type WorkerStatus struct {
	ID string `json:"id"`
	// Mode is "auto" (PARTITION_KEY=auto) or "static" (Partitions are its keys).
	Mode       string    `json:"mode"`
	Partitions []int     `json:"partitions,omitempty"`
	Started    time.Time `json:"started"`
	Heartbeat  time.Time `json:"heartbeat"`
	// Expires is when it counts as gone unless it renews its registration; Live
	// tells whether that is still ahead (by the database's clock).
	Expires time.Time `json:"expires"`
	Live    bool      `json:"live"`
}

// LeaseStatus is the lease of an auto-assigned partition.
type LeaseStatus struct {
	Owner string `json:"owner,omitempty"` // the worker holding it ("" when free)
	// Epoch is the fencing token: incremented by every claim.
	Epoch int64 `json:"epoch"`
	// Since is when the owner claimed it, Expires when it expires unless renewed.
	Since   time.Time `json:"since,omitzero"`
	Expires time.Time `json:"expires,omitzero"`
	// Live: held and not expired (by the database's clock); an expired lease is
	// claimed by the next auto worker that looks for work.
	Live bool `json:"live"`
}

// Rescaling reports whether a change of the partition count is still being carried over.
func (s ProjectionStatus) Rescaling() bool { return len(s.Retired) > 0 }

// PartitionStatus is one checkpoint.
type PartitionStatus struct {
	Key        int   `json:"key"`
	Count      int   `json:"count"`
	Generation int64 `json:"generation"`
	// Checkpoint is the partition's cursor: the position it handled up to and its
	// holes (transactions it passed while they ran, whose later events it handles
	// when they end).
	Checkpoint    eventstore.Cursor `json:"checkpoint"`
	EventsHandled int64             `json:"events_handled"`
	Lag           int64             `json:"lag"` // committed events of this partition not handled yet (0 for retired ones)
	LastMoved     time.Time         `json:"last_moved"`
	Retired       bool              `json:"retired,omitempty"`
	// Lease is the partition's lease when the projection runs with automatic
	// assignment (nil otherwise, and for retired checkpoints).
	Lease *LeaseStatus `json:"lease,omitempty"`
}

// Status returns the layout and partitions of one projection ([ErrNotFound] when it
// never ran).
func Status(ctx context.Context, db DBTX, name string) (ProjectionStatus, error) {
	if name == "" {
		return ProjectionStatus{}, errors.New("projection: status: empty projection name")
	}
	all, err := status(ctx, db, name)
	if err != nil {
		return ProjectionStatus{}, err
	}
	if len(all) == 0 {
		return ProjectionStatus{}, fmt.Errorf("projection %s: %w", name, ErrNotFound)
	}
	return all[0], nil
}

// StatusAll returns the status of every projection, by name.
func StatusAll(ctx context.Context, db DBTX) ([]ProjectionStatus, error) {
	return status(ctx, db, "")
}

func status(ctx context.Context, db DBTX, name string) ([]ProjectionStatus, error) {
	projs, err := queries.ListProjections(ctx, db, name)
	if err != nil {
		return nil, fmt.Errorf("projection: list projections: %w", err)
	}
	if len(projs) == 0 {
		return nil, nil
	}
	head, err := queries.StreamHead(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("projection: stream head: %w", err)
	}
	out := make([]ProjectionStatus, 0, len(projs))
	for _, p := range projs {
		st := ProjectionStatus{
			Name: p.Name, PartitionCount: int(p.PartitionCount), Generation: p.Generation,
			PreviousCount: int(p.PreviousCount.Int32), EventTypes: p.EventTypes, ChangedAt: p.ChangedAt.Time,
			Head: head, CountsUsed: make([]int, len(p.CountsUsed)), Partitions: []PartitionStatus{},
		}
		for i, c := range p.CountsUsed {
			st.CountsUsed[i] = int(c)
		}
		cps, err := queries.ListCheckpoints(ctx, db, p.Name)
		if err != nil {
			return nil, fmt.Errorf("projection %s: list checkpoints: %w", p.Name, err)
		}
		for _, c := range cps {
			ps := PartitionStatus{
				Key: int(c.PartitionKey), Count: int(c.PartitionCount), Generation: c.Generation,
				Checkpoint: cursorOf(c), EventsHandled: c.EventsHandled, LastMoved: c.UpdatedAt.Time, Retired: c.Retired,
			}
			if c.Retired {
				st.Retired = append(st.Retired, ps)
				continue
			}
			txs, _ := ps.Checkpoint.HoleArrays()
			lag := readsql.PartitionLag(readsql.Filter{
				AfterTransactionID: c.LastTransactionID.Uint64, AfterPosition: c.LastPosition,
				TotalPartitions: int(c.PartitionCount), PartitionKey: int(c.PartitionKey), EventTypes: p.EventTypes,
			}, readsql.Holes{TransactionIDs: txs, Positions: c.HolePositions}, p.Name)
			err = db.QueryRow(ctx, lag.SQL, lag.Args...).Scan(&ps.Lag)
			if err != nil {
				return nil, fmt.Errorf("projection %s: lag of partition %d: %w", p.Name, c.PartitionKey, err)
			}
			st.Lag += ps.Lag
			st.Partitions = append(st.Partitions, ps)
		}
		if err := historyStatus(ctx, db, &st, cps, time.Now()); err != nil {
			return nil, err
		}
		if err := assignmentStatus(ctx, db, &st); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Reset deletes a projection's layout and checkpoints so that its next start rebuilds
// it from the first event. It does not touch the read model: clear that in the same
// transaction (pass a pgx.Tx as db) or before starting the workers again, and stop
// every worker of the projection first. It returns [ErrNotFound] for an unknown
// projection.
func Reset(ctx context.Context, db DBTX, name string) error {
	n, err := queries.DeleteProjection(ctx, db, name)
	if err != nil {
		return fmt.Errorf("projection %s: reset: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("projection %s: %w", name, ErrNotFound)
	}
	return nil
}

// assignmentStatus adds the leases of the partitions and the registered workers (none
// on a database without migration 006).
func assignmentStatus(ctx context.Context, db DBTX, st *ProjectionStatus) error {
	leases, err := queries.ListLeases(ctx, db, st.Name)
	if isUndefinedTable(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("projection %s: list leases: %w", st.Name, err)
	}
	byKey := map[int]*LeaseStatus{}
	for _, l := range leases {
		byKey[int(l.PartitionKey)] = &LeaseStatus{Owner: l.Owner, Epoch: l.Epoch, Since: l.ClaimedAt.Time, Expires: l.ExpiresAt.Time, Live: l.Live}
	}
	for i := range st.Partitions {
		st.Partitions[i].Lease = byKey[st.Partitions[i].Key]
	}
	workers, err := queries.ListWorkers(ctx, db, st.Name)
	if err != nil {
		return fmt.Errorf("projection %s: list workers: %w", st.Name, err)
	}
	for _, w := range workers {
		ws := WorkerStatus{ID: w.WorkerID, Mode: w.Mode, Started: w.StartedAt.Time, Heartbeat: w.HeartbeatAt.Time, Expires: w.ExpiresAt.Time, Live: w.Live}
		for _, k := range w.PartitionKeys {
			ws.Partitions = append(ws.Partitions, int(k))
		}
		st.Workers = append(st.Workers, ws)
	}
	return nil
}
