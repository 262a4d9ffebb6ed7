package projection

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/generated/dbsqlc"
	"github.com/esgen-dev/esgen/internal/notify"
	"github.com/esgen-dev/esgen/internal/pgtest"
)

// The shares of any set of live workers add up to the partition count and differ by
// at most one; every worker computes the same shares from the same set, whatever its
// order; a worker not (yet) counted still gets a share.
func TestFairShareModel(t *testing.T) {
	t.Parallel()
	for total := 1; total <= 40; total++ {
		for n := 1; n <= 12; n++ {
			ids := make([]string, n)
			for i := range ids {
				ids[i] = fmt.Sprintf("w-%02d", (n-1-i+n/2)%n) // unsorted
			}
			sum, lo, hi := 0, total, 0
			for _, id := range ids {
				s := fairShare(total, ids, id)
				reversed := slices.Clone(ids)
				slices.Reverse(reversed)
				if r := fairShare(total, reversed, id); r != s {
					t.Fatalf("total %d, %d workers: %s gets %d or %d depending on the order", total, n, id, s, r)
				}
				sum += s
				lo, hi = min(lo, s), max(hi, s)
			}
			if sum != total || hi-lo > 1 || lo != total/n {
				t.Fatalf("total %d, %d workers: shares add up to %d, range %d..%d", total, n, sum, lo, hi)
			}
		}
	}
	if s := fairShare(8, []string{"a", "b"}, "c"); s != 2 {
		t.Fatalf("a worker not yet counted among a, b gets %d of 8, want 2 (it counts itself)", s)
	}
	if s := fairShare(8, []string{"a", "b", "c"}, "a"); s != 3 {
		t.Fatalf("a among a, b, c gets %d of 8, want 3", s)
	}
}

// leaseDB is a database with projection "rm" (4 partitions) and its leases.
func leaseDB(t *testing.T) (*pgxpool.Pool, Projection, int64) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	p := Projection{Name: "rm", Partitioned: true, Handler: HandlerFunc(func(context.Context, pgx.Tx, *eventstore.Event) error { return nil })}
	cfg := Config{TotalPartitions: 4, AutoAssign: true}.WithDefaults()
	gen, err := ensureLayout(ctx, pool, p, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := ensureLeases(ctx, pool, p.Name, gen, 4); err != nil {
		t.Fatal(err)
	}
	return pool, p, gen
}

func claim(t *testing.T, pool *pgxpool.Pool, gen int64, id string, n int) []dbsqlc.ClaimLeasesRow {
	t.Helper()
	rows, err := queries.ClaimLeases(context.Background(), pool, dbsqlc.ClaimLeasesParams{
		WorkerID: id, Ttl: interval(time.Minute), Projection: "rm", Generation: gen, MaxClaims: int32(n),
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func expire(t *testing.T, pool *pgxpool.Pool, owner string) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `UPDATE esgen_partition_leases SET expires_at = now() - interval '1 second' WHERE owner = $1`, owner); err != nil {
		t.Fatal(err)
	}
}

// Claims take free leases first, then expired ones, never a live one of another
// worker; every claim increments the token; a release needs the current token.
func TestClaimAndRelease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _, gen := leaseDB(t)
	keys := func(rows []dbsqlc.ClaimLeasesRow) []int {
		var out []int
		for _, r := range rows {
			out = append(out, int(r.PartitionKey))
		}
		slices.Sort(out)
		return out
	}
	a := claim(t, pool, gen, "a", 3)
	if got := keys(a); !slices.Equal(got, []int{0, 1, 2}) || a[0].Epoch != 1 || a[0].PreviousOwner != "" {
		t.Fatalf("a claimed %v (%+v), want the free 0, 1, 2 with token 1", got, a)
	}
	if got := keys(claim(t, pool, gen, "b", 4)); !slices.Equal(got, []int{3}) {
		t.Fatalf("b claimed %v, want only the free 3 (a's are live)", got)
	}
	if got := claim(t, pool, gen, "c", 4); len(got) != 0 {
		t.Fatalf("c claimed %v with every lease live", got)
	}
	expire(t, pool, "a")
	c := claim(t, pool, gen, "c", 2)
	if got := keys(c); len(got) != 2 || c[0].PreviousOwner != "a" || c[0].Epoch != 2 {
		t.Fatalf("c claimed %+v, want two of a's expired leases, token 2, previous owner a", c)
	}
	// a's release with its old token does nothing; c's own release frees the lease.
	stale, err := queries.ReleaseLease(ctx, pool, dbsqlc.ReleaseLeaseParams{Projection: "rm", Generation: gen, PartitionKey: c[0].PartitionKey, WorkerID: "a", Epoch: 1})
	if err != nil || stale != 0 {
		t.Fatalf("a's stale release: %d, %v", stale, err)
	}
	n, err := queries.ReleaseLease(ctx, pool, dbsqlc.ReleaseLeaseParams{Projection: "rm", Generation: gen, PartitionKey: c[0].PartitionKey, WorkerID: "c", Epoch: c[0].Epoch})
	if err != nil || n != 1 {
		t.Fatalf("c's release: %d, %v", n, err)
	}
	if got := claim(t, pool, gen, "d", 1); len(got) != 1 || got[0].PartitionKey != c[0].PartitionKey || got[0].Epoch != 3 {
		t.Fatalf("d claimed %+v, want the released lease with token 3", got)
	}
	// Renewal returns what a worker still holds.
	held, err := queries.RenewLeases(ctx, pool, dbsqlc.RenewLeasesParams{Ttl: interval(time.Minute), Projection: "rm", Generation: gen, WorkerID: "a"})
	if err != nil || len(held) != 1 {
		t.Fatalf("a renews %+v (%v), want the one lease nobody took over", held, err)
	}
}

// fencedBatch runs one batch of partition key for worker id holding token epoch,
// with the lease check on or off, and reports its error.
func fencedBatch(t *testing.T, pool *pgxpool.Pool, p Projection, gen int64, id string, key int, epoch int64, check bool) error {
	t.Helper()
	cfg := Config{TotalPartitions: 4, AutoAssign: true}.WithDefaults()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := &assigner{pool: pool, p: p, cfg: cfg, gen: gen, total: 4, id: id, log: log, ttl: time.Minute, skipFence: !check, owned: map[int]*lease{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := &lease{key: key, epoch: epoch, cancel: cancel}
	w := &worker{pool: pool, p: p, cfg: cfg, key: key, total: 4, gen: gen, wake: notify.NewBroadcast(), obs: nopObserver{}, log: log,
		fence: &leaseFence{a: a, l: l}}
	w.lastIdle = time.Now() // handle events, do not just follow the head
	_, _, err := w.batch(ctx, ctx)
	return err
}

func checkpointOf(t *testing.T, pool *pgxpool.Pool, gen int64, key int) eventstore.Cursor {
	t.Helper()
	cp, err := queries.GetCheckpoint(context.Background(), pool, dbsqlc.GetCheckpointParams{Projection: "rm", Generation: gen, PartitionKey: int32(key)})
	if err != nil {
		t.Fatal(err)
	}
	return cursorOf(cp)
}

// A worker whose lease expired and was claimed by another (it was paused) cannot
// commit its batch, even though nothing moved the checkpoint yet: the batch checks
// the token in its transaction. Without that check, the checkpoint's compare-and-set
// alone lets the stale batch commit; so this test fails if the check is disabled.
func TestStaleTokenBatchRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, p, gen := leaseDB(t)
	var key int
	// An event in some partition.
	ev, err := eventstore.Append(ctx, pool, "Counter", "agg-1", eventstore.Any, eventstore.EventData{Type: "Tick", Payload: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	_ = ev
	if err := pool.QueryRow(ctx, `SELECT (partition_hash % 4)::int FROM esgen_events LIMIT 1`).Scan(&key); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitFor(t, time.Minute, "the event to be readable", func() bool {
		evs, err := eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{Limit: 10})
		return err == nil && len(evs) == 1
	})
	var tokenA int64
	for _, r := range claim(t, pool, gen, "a", 4) {
		if int(r.PartitionKey) == key {
			tokenA = r.Epoch
		}
	}
	expire(t, pool, "a") // a paused past its lease
	var tokenB int64
	for _, r := range claim(t, pool, gen, "b", 4) {
		if int(r.PartitionKey) == key {
			tokenB = r.Epoch
		}
	}
	if tokenA == 0 || tokenB <= tokenA {
		t.Fatalf("tokens a %d, b %d", tokenA, tokenB)
	}
	before := checkpointOf(t, pool, gen, key)

	// a resumes: its batch is refused and the checkpoint stays.
	if err := fencedBatch(t, pool, p, gen, "a", key, tokenA, true); !errors.Is(err, errLeaseLost) {
		t.Fatalf("a's batch with the stale token: %v, want errLeaseLost", err)
	}
	if after := checkpointOf(t, pool, gen, key); !after.Equal(before) {
		t.Fatalf("a's stale batch moved the checkpoint from %s to %s", before, after)
	}
	// The check is what refuses it: with it off, the compare-and-set lets it commit.
	if err := fencedBatch(t, pool, p, gen, "a", key, tokenA, false); err != nil {
		t.Fatalf("a's batch without the lease check: %v", err)
	}
	moved := checkpointOf(t, pool, gen, key)
	if moved.Equal(before) {
		t.Fatal("without the lease check the stale batch did not commit either: the test shows nothing")
	}
	// b, the holder, commits.
	if _, err := eventstore.Append(ctx, pool, "Counter", "agg-1", eventstore.Any, eventstore.EventData{Type: "Tick", Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitFor(t, time.Minute, "the second event to be readable", func() bool {
		evs, err := eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{Limit: 10})
		return err == nil && len(evs) == 2
	})
	if err := fencedBatch(t, pool, p, gen, "b", key, tokenB, true); err != nil {
		t.Fatalf("b's batch with the current token: %v", err)
	}
	if after := checkpointOf(t, pool, gen, key); after.Equal(moved) {
		t.Fatal("b's batch did not move the checkpoint")
	}
}
