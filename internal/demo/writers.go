package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/demo/generated/events"
)

type expectation struct {
	events   int
	balances map[string]int64
}

func accountID(i int) string { return fmt.Sprintf("acct-%04d", i) }

func partitionOf(id string, total int) int { return eventstore.PartitionOf(id, total) }

// write appends opts.Events events with opts.Writers concurrent writers. Each writer owns
// the accounts i with i mod writers = w, opens them, then deposits and withdraws in
// transactions of one to three events that sleep a little before committing, so
// commits land out of order.
func write(ctx context.Context, pool *pgxpool.Pool, opts Options, appended *atomic.Int64) (*expectation, error) {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	exp := &expectation{balances: map[string]int64{}}
	perWriter := opts.Events / opts.Writers
	for w := range opts.Writers {
		budget := perWriter
		if w == 0 {
			budget += opts.Events % opts.Writers
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, balances, err := writer(ctx, pool, w, budget, opts, appended)
			mu.Lock()
			defer mu.Unlock()
			exp.events += n
			for id, b := range balances {
				exp.balances[id] = b
			}
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	return exp, firstErr
}

func writer(ctx context.Context, pool *pgxpool.Pool, w, budget int, opts Options, appended *atomic.Int64) (int, map[string]int64, error) {
	rng := rand.New(rand.NewPCG(uint64(w), 42))
	var mine []string
	for i := w; i < opts.Accounts; i += opts.Writers {
		mine = append(mine, accountID(i))
	}
	balances := map[string]int64{}
	written := 0
	for _, id := range mine {
		if written >= budget {
			break
		}
		_, err := events.AppendAccount(ctx, pool, id, eventstore.NoStream,
			events.AccountOpened{Owner: fmt.Sprintf("owner of %s", id), Currency: "EUR"})
		if err != nil {
			return written, balances, fmt.Errorf("demo: writer %d: open %s: %w", w, id, err)
		}
		balances[id] = 0
		written++
		appended.Add(1)
	}
	opened := mine[:min(len(mine), written)]
	for written < budget && len(opened) > 0 {
		id := opened[rng.IntN(len(opened))]
		n := min(1+rng.IntN(3), budget-written)
		evs := make([]events.AccountEvent, n)
		delta := int64(0)
		for k := range evs {
			amount := int64(1 + rng.IntN(100))
			if rng.IntN(4) == 0 {
				evs[k] = events.MoneyWithdrawn{Amount: amount}
				delta -= amount
			} else {
				note := "deposit"
				evs[k] = events.MoneyDeposited{Amount: amount, Note: &note}
				delta += amount
			}
		}
		pause := time.Duration(rng.IntN(2000)) * time.Microsecond
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := events.AppendAccount(ctx, tx, id, eventstore.Any, evs...); err != nil {
				return err
			}
			time.Sleep(pause) // hold the transaction open so commits interleave
			return nil
		})
		if err != nil {
			return written, balances, fmt.Errorf("demo: writer %d: append to %s: %w", w, id, err)
		}
		balances[id] += delta
		written += n
		appended.Add(int64(n))
	}
	return written, balances, nil
}
