package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/generated/dbsqlc"
	"github.com/esgen-dev/esgen/internal/notify"
)

// Automatic partition assignment (Config.AutoAssign): the workers of a projection
// share its partitions through PostgreSQL only (sql/migrations/006_partition_leases.sql).
//
// Each worker registers a row in esgen_workers that it renews (its heartbeat), counts
// the live auto workers and claims leases up to its fair share ([fairShare]), free
// ones first, then expired ones, with FOR UPDATE SKIP LOCKED so that claimers never
// wait for each other. Every claim increments the lease's epoch, the fencing token.
// A dedicated connection renews the worker's leases every tick (at most a third of
// the lease time); a lease the worker no longer holds (another claimed it after it
// expired) stops its partition at the batch boundary. A worker over its share (one
// joined) stops the surplus at a batch boundary and releases it; a worker that stops
// releases every lease after its batches, and every release notifies the others
// (channel esgen_leases), so they claim at once instead of waiting for the expiry.
//
// Leases decide who should work; the batch decides who may commit: right before the
// checkpoint moves, a batch checks in its transaction that its worker still holds the
// lease with the token it claimed (and locks the lease until it commits, so that it
// cannot be claimed in between), and the checkpoint's compare-and-set stays the final
// fence. A worker paused past its lease (SIGSTOP, a long stall) therefore cannot
// commit after another worker claimed its partition.
//
// Leases belong to the layout generation in force: a change of the partition count or
// a rebuild stops auto workers like static ones (LayoutChangedError), and the next
// start creates the leases of the new generation.

// DefaultLeaseTTL is the default lease time of auto-assigned partitions: a worker
// that dies loses its partitions after it (plus at most a tick).
const DefaultLeaseTTL = 6 * time.Second

// MinLeaseTTL is the shortest lease time [Run] accepts with Config.AutoAssign.
const MinLeaseTTL = time.Second

// LeaseChannel is the LISTEN/NOTIFY channel on which workers announce released
// leases and new workers.
const LeaseChannel = "esgen_leases"

// AssignmentConflictError refuses to start a worker on a projection that workers of
// the other kind run: static partition keys and automatic assignment are never mixed.
type AssignmentConflictError struct {
	Projection string
	// Auto tells whether the refused worker is an auto-assigned one.
	Auto bool
	// Others are the live workers of the other kind, as "id" or "id (keys 0,2)".
	Others []string
	// Until is when the last of them expires unless it renews its registration.
	Until time.Time
}

func (e *AssignmentConflictError) Error() string {
	others := strings.Join(e.Others, ", ")
	if e.Auto {
		return fmt.Sprintf("projection %s: cannot start a worker with PARTITION_KEY=auto: workers with static partition keys run it (%s, registered until %s); static and automatic assignment are not mixed: stop them first, or start this worker with a static PARTITION_KEY",
			e.Projection, others, e.Until.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("projection %s: cannot start a worker with static partition keys: workers with PARTITION_KEY=auto run it (%s, registered until %s); static and automatic assignment are not mixed: stop them first, or start this worker with PARTITION_KEY=auto",
		e.Projection, others, e.Until.UTC().Format(time.RFC3339))
}

// DefaultWorkerID is the worker identity used when Config.WorkerID is empty: the host
// name and the process id (in Kubernetes the host name is the pod's name).
func DefaultWorkerID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "worker"
	}
	return host + "-" + strconv.Itoa(os.Getpid())
}

// fairShare is how many of total partitions worker me runs among the live workers,
// listed oldest first: total divided by their number, the first total % n of them one
// more, so that the shares add up to total and differ by at most one, and a worker
// that joins never takes one of the larger shares from a worker already running (so
// no partition moves more than needed). A worker not listed yet counts as the newest.
func fairShare(total int, live []string, me string) int {
	rank := slices.Index(live, me)
	n := len(live)
	if rank < 0 {
		rank, n = n, n+1
	}
	if rank < total%n {
		return total/n + 1
	}
	return total / n
}

// assignTick is how often an auto worker renews its leases and looks for work: a
// third of the lease time, at most a second.
func assignTick(ttl time.Duration) time.Duration {
	return min(ttl/3, time.Second)
}

func interval(d time.Duration) pgtype.Interval {
	return pgtype.Interval{Microseconds: d.Microseconds(), Valid: true}
}

// isUndefinedTable reports a missing table (a database not migrated to 006 yet).
func isUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
}

// register records a worker of projection name (auto, or static with keys), unless a
// live worker of the other kind runs it: then it returns an [*AssignmentConflictError].
func register(ctx context.Context, pool *pgxpool.Pool, name, id string, auto bool, keys []int, ttl time.Duration) error {
	mode := "static"
	if auto {
		mode = "auto"
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("projection %s: register worker %s: begin: %w", name, id, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := queries.LockWorkers(ctx, tx, name); err != nil {
		return fmt.Errorf("projection %s: register worker %s: %w", name, id, err)
	}
	others, err := queries.LiveWorkersOfOtherMode(ctx, tx, dbsqlc.LiveWorkersOfOtherModeParams{Projection: name, Mode: mode})
	if err != nil {
		return fmt.Errorf("projection %s: register worker %s: %w", name, id, err)
	}
	if len(others) > 0 {
		ce := &AssignmentConflictError{Projection: name, Auto: auto}
		for _, o := range others {
			s := o.WorkerID
			if o.Mode == "static" {
				s += " (keys " + joinInts(o.PartitionKeys) + ")"
			}
			ce.Others = append(ce.Others, s)
			if o.ExpiresAt.Time.After(ce.Until) {
				ce.Until = o.ExpiresAt.Time
			}
		}
		return ce
	}
	k32 := make([]int32, len(keys))
	for i, k := range keys {
		k32[i] = int32(k)
	}
	if err := queries.RegisterWorker(ctx, tx, dbsqlc.RegisterWorkerParams{
		Projection: name, WorkerID: id, Mode: mode, PartitionKeys: k32, Ttl: interval(ttl),
	}); err != nil {
		return fmt.Errorf("projection %s: register worker %s: %w", name, id, err)
	}
	if auto {
		// A worker restarted with the same id (a container restarted in its pod) gives
		// back what its predecessor held; the others are told that one more worker runs.
		if err := queries.ReleaseWorkerLeases(ctx, tx, dbsqlc.ReleaseWorkerLeasesParams{Projection: name, WorkerID: id}); err != nil {
			return fmt.Errorf("projection %s: register worker %s: %w", name, id, err)
		}
	}
	_ = queries.DeleteDeadWorkers(ctx, tx, name)
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("projection %s: register worker %s: commit: %w", name, id, err)
	}
	return nil
}

func joinInts(v []int32) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(int(x))
	}
	return strings.Join(s, ",")
}

// registerStatic registers a static worker; a database without the tables of
// automatic assignment runs static workers as before.
func registerStatic(ctx context.Context, pool *pgxpool.Pool, name, id string, keys []int, ttl time.Duration) (registered bool, err error) {
	err = register(ctx, pool, name, id, false, keys, ttl)
	var ce *AssignmentConflictError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ce), isTransient(err):
		return false, err
	case isUndefinedTable(err):
		return false, nil
	default:
		// The registration only guards against mixing: a static worker runs without it.
		slog.Default().Debug("could not register the static worker", "projection", name, "worker", id, "error", err)
		return false, nil
	}
}

// heartbeatStatic renews a static worker's registration until ctx ends, then deletes it.
func heartbeatStatic(ctx context.Context, pool *pgxpool.Pool, name, id string, ttl time.Duration, log *slog.Logger) {
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = queries.DeleteWorker(dctx, pool, dbsqlc.DeleteWorkerParams{Projection: name, WorkerID: id})
			cancel()
			return
		case <-t.C:
			if _, err := queries.HeartbeatWorker(ctx, pool, dbsqlc.HeartbeatWorkerParams{Ttl: interval(ttl), Projection: name, WorkerID: id}); err != nil && ctx.Err() == nil {
				log.Debug("could not renew the worker registration", "worker", id, "error", err)
			}
		}
	}
}

// errLeaseLost: the batch's worker no longer holds its partition's lease; the batch
// was rolled back and the partition stops.
var errLeaseLost = errors.New("the partition's lease is held by another worker")

// lease is a partition this worker holds and runs.
type lease struct {
	key       int
	epoch     int64
	cancel    context.CancelFunc
	releasing string // why the partition is being stopped to be released ("" while it runs)
	lost      string // why the lease was lost ("" while held)
	claimed   time.Time
}

// assigner runs the partitions this worker claims (Config.AutoAssign).
type assigner struct {
	pool  *pgxpool.Pool
	p     Projection
	cfg   Config
	gen   int64
	total int
	id    string
	log   *slog.Logger
	obs   AssignmentObserver // nil: none
	ttl   time.Duration
	// skipFence turns the lease check of the batches off (a test shows what it catches).
	skipFence bool

	// runPartition runs a partition until its ctx ends; fence checks the lease in the
	// batch's transaction.
	runPartition func(ctx context.Context, key int, fence *leaseFence) error
	fail         func(error)

	wake  *notify.Broadcast // released leases, new workers
	conn  *pgx.Conn         // dedicated: renewals never wait for a pool connection
	parts sync.WaitGroup

	mu      sync.Mutex
	owned   map[int]*lease
	pending map[int]int64 // claimed, waiting for the partition's previous run to finish: the token
}

// run claims, renews and releases partitions until ctx ends; then it stops its
// partitions after their batches, releases their leases and deregisters.
func (a *assigner) run(ctx context.Context) {
	a.owned, a.pending = map[int]*lease{}, map[int]int64{}
	a.wake = notify.NewBroadcast()
	var listener sync.WaitGroup
	lctx, stopListener := context.WithCancel(ctx)
	l := &notify.Listener{ConnConfig: a.pool.Config().ConnConfig, Log: a.log, Wake: a.wake, Channel: LeaseChannel,
		Backoff: func(n int) time.Duration { return backoff(a.cfg.RetryBackoff, a.cfg.MaxRetryBackoff, n) }}
	listener.Go(func() { l.Run(lctx) })
	defer func() {
		stopListener()
		listener.Wait()
	}()
	defer a.shutdown(ctx)

	tick := assignTick(a.ttl)
	lastRenewed := time.Now()
	failing := false
	for ctx.Err() == nil {
		wake := a.wake.C()
		err := a.step(ctx)
		switch {
		case err == nil:
			if failing {
				a.log.Info("lease renewal works again", "worker", a.id)
			}
			lastRenewed, failing = time.Now(), false
		case ctx.Err() != nil:
		default:
			if !failing {
				a.log.Warn("could not renew the partition leases, retrying", "worker", a.id, "error", err)
				failing = true
			}
			a.closeConn(ctx)
			if time.Since(lastRenewed) > a.ttl {
				a.loseAll("the leases could not be renewed for longer than the lease time")
			}
		}
		t := time.NewTimer(jitter(tick))
		select {
		case <-ctx.Done():
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

func (a *assigner) closeConn(ctx context.Context) {
	if a.conn != nil {
		_ = a.conn.Close(context.WithoutCancel(ctx))
		a.conn = nil
	}
}

// step renews this worker's registration and leases, stops the partitions it lost,
// releases its surplus and claims up to its fair share.
func (a *assigner) step(ctx context.Context) error {
	if a.conn == nil {
		cctx, cancel := context.WithTimeout(ctx, a.ttl)
		conn, err := pgx.ConnectConfig(cctx, a.pool.Config().ConnConfig.Copy())
		cancel()
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		a.conn = conn
	}
	// The statements are not cut short when ctx ends: a claim that committed is then
	// known, and released at once.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.ttl)
	defer cancel()
	n, err := queries.HeartbeatWorker(sctx, a.conn, dbsqlc.HeartbeatWorkerParams{Ttl: interval(a.ttl), Projection: a.p.Name, WorkerID: a.id})
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	if n == 0 { // deleted meanwhile (a long pause): register again
		if err := queries.RegisterWorker(sctx, a.conn, dbsqlc.RegisterWorkerParams{
			Projection: a.p.Name, WorkerID: a.id, Mode: "auto", PartitionKeys: []int32{}, Ttl: interval(a.ttl),
		}); err != nil {
			return fmt.Errorf("register again: %w", err)
		}
	}
	// The layout changed (esgen rescale, --rescale, a rebuild): this worker stops, as
	// static ones do, and the next start shares the leases of the new layout.
	proj, err := queries.GetProjection(sctx, a.conn, a.p.Name)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("look up the layout: %w", err)
	}
	if err != nil || proj.Generation != a.gen {
		gone := (&worker{pool: a.pool, p: a.p, gen: a.gen, total: a.total}).layoutGone(sctx)
		a.fail(gone)
		return nil
	}
	held, err := queries.RenewLeases(sctx, a.conn, dbsqlc.RenewLeasesParams{Ttl: interval(a.ttl), Projection: a.p.Name, Generation: a.gen, WorkerID: a.id})
	if err != nil {
		return fmt.Errorf("renew leases: %w", err)
	}
	holds := map[int]int64{}
	for _, h := range held {
		holds[int(h.PartitionKey)] = h.Epoch
	}
	live, err := queries.LiveAutoWorkers(sctx, a.conn, a.p.Name)
	if err != nil {
		return fmt.Errorf("count the live workers: %w", err)
	}
	share := fairShare(a.total, live, a.id)

	a.mu.Lock()
	// Leases this worker holds but does not run (kept renewed after its partitions
	// stopped while the database was unreachable): give them back.
	var stray []dbsqlc.RenewLeasesRow
	for _, h := range held {
		k := int(h.PartitionKey)
		if l := a.owned[k]; (l == nil || l.epoch != h.Epoch) && a.pending[k] != h.Epoch {
			stray = append(stray, h)
		}
	}
	active := 0
	var running []*lease
	for _, l := range a.owned {
		if l.lost != "" {
			continue
		}
		if e, ok := holds[l.key]; !ok || e != l.epoch {
			a.loseLocked(l, "another worker claimed the partition after its lease expired")
			continue
		}
		if l.releasing == "" {
			active++
			running = append(running, l)
		}
	}
	// Over the share: stop the most recently claimed partitions; they are released
	// once their batch in hand is done.
	slices.SortFunc(running, func(x, y *lease) int { return y.claimed.Compare(x.claimed) })
	for i := 0; active > share && i < len(running); i++ {
		l := running[i]
		l.releasing = fmt.Sprintf("over the fair share (%d of %d partitions for %d workers)", share, a.total, len(live))
		l.cancel()
		active--
	}
	want := share - active
	busy := len(a.owned) - active // partitions still finishing, not released yet
	a.mu.Unlock()
	for _, h := range stray {
		if _, err := queries.ReleaseLease(sctx, a.conn, dbsqlc.ReleaseLeaseParams{
			Projection: a.p.Name, Generation: a.gen, PartitionKey: h.PartitionKey, WorkerID: a.id, Epoch: h.Epoch,
		}); err != nil {
			return fmt.Errorf("release lease of partition %d: %w", h.PartitionKey, err)
		}
		a.log.Info("partition released", "partition", h.PartitionKey, "worker", a.id, "epoch", h.Epoch, "reason", "held but not run (its partition stopped while the leases could not be renewed)")
	}
	if want <= 0 || busy > 0 && active+busy >= share || ctx.Err() != nil {
		return nil
	}
	claimed, err := queries.ClaimLeases(sctx, a.conn, dbsqlc.ClaimLeasesParams{
		WorkerID: a.id, Ttl: interval(a.ttl), Projection: a.p.Name, Generation: a.gen, MaxClaims: int32(want),
	})
	if err != nil {
		return fmt.Errorf("claim leases: %w", err)
	}
	for _, c := range claimed {
		a.start(ctx, int(c.PartitionKey), c.Epoch, c.PreviousOwner, share, len(live))
	}
	return nil
}

// start runs a claimed partition.
func (a *assigner) start(ctx context.Context, key int, epoch int64, previous string, share, workers int) {
	pctx, cancel := context.WithCancel(ctx)
	l := &lease{key: key, epoch: epoch, cancel: cancel, claimed: time.Now()}
	a.mu.Lock()
	if old := a.owned[key]; old != nil {
		// Still finishing after it was lost or released: the new claim waits for it.
		a.pending[key] = epoch
		a.mu.Unlock()
		a.parts.Go(func() {
			a.waitGone(ctx, key, old)
			a.begin(pctx, l, previous, share, workers)
		})
		return
	}
	a.owned[key] = l
	a.mu.Unlock()
	a.begin(pctx, l, previous, share, workers)
}

// waitGone waits until old is no longer run (or ctx ends).
func (a *assigner) waitGone(ctx context.Context, key int, old *lease) {
	for {
		a.mu.Lock()
		cur := a.owned[key]
		if cur != old {
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		if !sleep(ctx, 20*time.Millisecond) {
			return
		}
	}
}

func (a *assigner) begin(ctx context.Context, l *lease, previous string, share, workers int) {
	a.mu.Lock()
	a.owned[l.key] = l
	if a.pending[l.key] == l.epoch {
		delete(a.pending, l.key)
	}
	a.mu.Unlock()
	attrs := []any{"partition", l.key, "worker", a.id, "epoch", l.epoch, "share", share, "workers", workers}
	ch := AssignmentChange{Kind: AssignClaimed, Worker: a.id, Epoch: l.epoch, PreviousOwner: previous}
	if previous != "" {
		attrs = append(attrs, "previous_owner", previous, "lease_expired", true)
		ch.Reason = "the lease of " + previous + " expired"
	}
	a.log.Info("partition claimed", attrs...)
	part := Partition{Projection: a.p.Name, Key: l.key, Total: a.total, Generation: a.gen}
	if a.obs != nil {
		a.obs.Assignment(part, ch)
	}
	fence := &leaseFence{a: a, l: l}
	a.parts.Go(func() {
		err := a.runPartition(ctx, l.key, fence)
		a.finish(ctx, l, err)
	})
}

func (a *assigner) lose(l *lease, why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.loseLocked(l, why)
}

func (a *assigner) loseLocked(l *lease, why string) {
	if l.lost != "" {
		return
	}
	l.lost = why
	l.cancel()
	a.log.Info("partition lost", "partition", l.key, "worker", a.id, "epoch", l.epoch, "reason", why)
}

// loseAll stops every partition: their leases can no longer be renewed.
func (a *assigner) loseAll(why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range a.owned {
		a.loseLocked(l, why)
	}
}

// finish runs after a partition stopped (its batch in hand committed or rolled back):
// it releases the lease unless it was lost, and reports a fatal error.
func (a *assigner) finish(ctx context.Context, l *lease, err error) {
	a.mu.Lock()
	why, lost := l.releasing, l.lost != ""
	if why == "" {
		why = "the worker stops"
	}
	a.mu.Unlock()
	released := false
	if !lost {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.ttl)
		n, rerr := queries.ReleaseLease(rctx, a.pool, dbsqlc.ReleaseLeaseParams{
			Projection: a.p.Name, Generation: a.gen, PartitionKey: int32(l.key), WorkerID: a.id, Epoch: l.epoch,
		})
		cancel()
		switch {
		case rerr != nil:
			a.log.Warn("could not release the partition's lease; it expires by itself", "partition", l.key, "worker", a.id, "error", rerr)
		case n == 0:
			a.lose(l, "another worker claimed the partition after its lease expired")
		default:
			released = true
			a.log.Info("partition released", "partition", l.key, "worker", a.id, "epoch", l.epoch, "reason", why)
		}
	}
	if a.obs != nil {
		part := Partition{Projection: a.p.Name, Key: l.key, Total: a.total, Generation: a.gen}
		a.mu.Lock()
		lostWhy := l.lost
		a.mu.Unlock()
		switch {
		case lostWhy != "":
			a.obs.Assignment(part, AssignmentChange{Kind: AssignLost, Worker: a.id, Epoch: l.epoch, Reason: lostWhy})
		case released:
			a.obs.Assignment(part, AssignmentChange{Kind: AssignReleased, Worker: a.id, Epoch: l.epoch, Reason: why})
		default: // not released (the database is unreachable): it expires by itself
			a.obs.Assignment(part, AssignmentChange{Kind: AssignLost, Worker: a.id, Epoch: l.epoch, Reason: "could not be released"})
		}
	}
	a.mu.Lock()
	if a.owned[l.key] == l {
		delete(a.owned, l.key)
	}
	a.mu.Unlock()
	if err != nil {
		a.fail(err)
	}
	// Wake the loop: this worker may claim again (or another released partition waits).
	a.wake.Broadcast()
}

// shutdown stops every partition after its batch (their leases are released as they
// finish) and deregisters the worker.
func (a *assigner) shutdown(ctx context.Context) {
	a.mu.Lock()
	for _, l := range a.owned {
		if l.releasing == "" {
			l.releasing = "the worker stops"
		}
		l.cancel()
	}
	a.mu.Unlock()
	a.parts.Wait()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = queries.ReleaseWorkerLeases(dctx, a.pool, dbsqlc.ReleaseWorkerLeasesParams{Projection: a.p.Name, WorkerID: a.id})
	_ = queries.DeleteWorker(dctx, a.pool, dbsqlc.DeleteWorkerParams{Projection: a.p.Name, WorkerID: a.id})
	_, _ = a.pool.Exec(dctx, "SELECT pg_notify($1, $2)", LeaseChannel, a.p.Name)
	a.closeConn(ctx)
	a.log.Info("worker deregistered", "worker", a.id)
}

// ensureLeases creates the leases of layout generation gen (free) and deletes those of
// other generations.
func ensureLeases(ctx context.Context, pool *pgxpool.Pool, name string, gen int64, total int) error {
	if err := queries.EnsureLeases(ctx, pool, dbsqlc.EnsureLeasesParams{Projection: name, Generation: gen, LastKey: int32(total - 1)}); err != nil {
		return fmt.Errorf("projection %s: create the partition leases of generation %d: %w", name, gen, err)
	}
	return nil
}

// leaseFence is what a batch of an auto-assigned partition checks in its transaction
// (nil for a static partition: no check).
type leaseFence struct {
	a *assigner
	l *lease
}

// beforeLock runs right before the batch locks its checkpoint: the server ends the
// session of a batch that stays idle inside its transaction longer than the lease
// time (its worker paused, or stalled), so that its locks do not hold up the worker
// that takes the partition over.
func (f *leaseFence) beforeLock(ctx context.Context, tx pgx.Tx) error {
	if f == nil {
		return nil
	}
	ms := max(f.a.ttl.Milliseconds(), 1)
	if _, err := tx.Exec(ctx, "SELECT set_config('idle_in_transaction_session_timeout', $1, true)", strconv.FormatInt(ms, 10)); err != nil {
		return fmt.Errorf("set the idle timeout of the batch: %w", err)
	}
	return nil
}

// check runs right before the checkpoint moves: the batch commits only while its
// worker holds the partition's lease with the token it claimed, and the lease stays
// locked until then. Otherwise the partition stops (its batch rolls back).
func (f *leaseFence) check(ctx context.Context, tx pgx.Tx) error {
	if f == nil || f.a.skipFence {
		return nil
	}
	a, l := f.a, f.l
	ok, err := queries.HoldsLease(ctx, tx, dbsqlc.HoldsLeaseParams{
		Projection: a.p.Name, Generation: a.gen, PartitionKey: int32(l.key), WorkerID: a.id, Epoch: l.epoch,
	})
	if err != nil {
		return fmt.Errorf("check the lease of partition %d: %w", l.key, err)
	}
	if !ok {
		a.lose(l, "another worker claimed the partition; the batch in hand was rolled back")
		return errLeaseLost
	}
	return nil
}
