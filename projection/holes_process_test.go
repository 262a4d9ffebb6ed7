package projection_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
)

// holeWriters append the way that makes gap-safe reading hard: commits delayed at
// random (so transactions commit out of transaction id order), 5% rolled back, and 10%
// writing another table before appending (so they hold an older transaction id than
// the appends that lock the aggregate after them). Serialization failures (40001) and
// other errors are retried.
type holeWriters struct {
	appended   atomic.Int64 // events committed
	rolledBack atomic.Int64 // events rolled back on purpose
	retried    atomic.Int64
}

func (w *holeWriters) run(ctx context.Context, pool *pgxpool.Pool, n, events, aggregates int, maxDelay time.Duration) {
	var wg sync.WaitGroup
	per := events / n
	for i := range n {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for done := 0; done < per && ctx.Err() == nil; {
				k := min(1+rng.IntN(3), per-done)
				agg := fmt.Sprintf("agg-%d", rng.IntN(aggregates))
				evs := make([]eventstore.EventData, k)
				for j := range evs {
					evs[j] = eventstore.EventData{Type: "Tick", Payload: fmt.Appendf(nil, `{"w":%d,"n":%d}`, i, done+j)}
				}
				elsewhere, rollback := rng.IntN(10) == 0, rng.IntN(20) == 0
				delay := time.Duration(rng.Int64N(int64(maxDelay)))
				err := func() error {
					tx, err := pool.Begin(ctx)
					if err != nil {
						return err
					}
					defer tx.Rollback(context.Background())
					if elsewhere {
						if _, err := tx.Exec(ctx, `INSERT INTO side_writes (writer) VALUES ($1)`, i); err != nil {
							return err
						}
						time.Sleep(delay / 2)
					}
					if _, err := eventstore.Append(ctx, tx, "Counter", agg, eventstore.Any, evs...); err != nil {
						return err
					}
					time.Sleep(delay)
					if rollback {
						return tx.Rollback(ctx)
					}
					return tx.Commit(ctx)
				}()
				switch {
				case err != nil:
					if ctx.Err() != nil {
						return
					}
					w.retried.Add(1)
					time.Sleep(5 * time.Millisecond)
				case rollback:
					w.rolledBack.Add(int64(k))
				default:
					done += k
					w.appended.Add(int64(k))
				}
			}
		})
	}
	wg.Wait()
}

// Four partitions in four processes read past running transactions while 8 writers
// commit out of order, roll back and write other tables first: every committed event
// is applied once, in version order per aggregate, by the partition FNV-1a names, and
// no rolled-back event is applied.
func TestProcessesHolesExactlyOnce(t *testing.T) {
	t.Parallel()
	events, aggregates := 12000, 600
	if testing.Short() {
		events, aggregates = 3000, 200
	}
	url, pool := newReadModelDB(t)
	if _, err := pool.Exec(context.Background(), `CREATE TABLE side_writes (id bigserial PRIMARY KEY, writer int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	var ps []*proc
	for k := range 4 {
		ps = append(ps, startWorker(t, fmt.Sprintf("p%d", k), url,
			fmt.Sprintf("PARTITION_KEY=%d", k), "TOTAL_PARTITIONS=4", "BATCH_SIZE=20"))
	}
	// Sample the checkpoints while the writers run: the readers do read past running
	// transactions (they carry holes) instead of waiting for them.
	var maxHoles atomic.Int64
	sampleCtx, stopSampling := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sampleCtx.Err() == nil {
			var n int64
			if err := pool.QueryRow(sampleCtx, `SELECT coalesce(max(cardinality(hole_transaction_ids)), 0) FROM esgen_checkpoints`).Scan(&n); err == nil && n > maxHoles.Load() {
				maxHoles.Store(n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	var w holeWriters
	w.run(context.Background(), pool, 8, events, aggregates, 20*time.Millisecond)
	waitApplied(t, pool, 3*time.Minute, allAlive(ps...))
	stopSampling()
	<-sampled
	for _, p := range ps {
		if code := p.stop(t); code != 0 {
			t.Errorf("%s exited with %d after SIGTERM:\n%s", p.name, code, tailLines(p.Output(), 10))
		}
	}
	stored := checkReadModel(t, pool)
	if stored != w.appended.Load() {
		t.Fatalf("%d events stored, the writers committed %d", stored, w.appended.Load())
	}
	if side := count(t, pool, "SELECT count(*) FROM side_writes"); side == 0 {
		t.Fatal("no writer wrote another table before appending")
	}
	t.Logf("%d events applied exactly once in order; %d rolled back, %d retried; up to %d holes in one checkpoint",
		stored, w.rolledBack.Load(), w.retried.Load(), maxHoles.Load())
}
