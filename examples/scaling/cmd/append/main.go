// Command append appends sample events to the example's event store with the typed
// events.AppendAccount helper. Concurrent writers share the accounts acct-0001 …
// acct-N (writer w owns the accounts i with i mod writers = w). Each round, every
// account not opened yet is opened, then gets -deposits deposits of 10 and one
// withdrawal of 5, in one append (one transaction) per account:
//
//	./bin/append -accounts 200 -deposits 5 -writers 4
//	./bin/append -accounts 200 -deposits 1 -rounds 20 -pause 100ms   # keeps appending for ~2s
//
// It connects to DATABASE_URL and prints how many events it appended.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/examples/scaling/generated/events"
)

func main() {
	accounts := flag.Int("accounts", 200, "number of accounts")
	deposits := flag.Int("deposits", 5, "deposits of 10 per account and round (then one withdrawal of 5)")
	writers := flag.Int("writers", 4, "concurrent writers")
	rounds := flag.Int("rounds", 1, "rounds over all accounts")
	pause := flag.Duration("pause", 0, "pause between rounds")
	flag.Parse()
	if *accounts < 1 || *writers < 1 || *rounds < 1 || *deposits < 0 {
		fmt.Fprintln(os.Stderr, "append: -accounts, -writers and -rounds must be at least 1, -deposits at least 0")
		os.Exit(2)
	}
	n, err := run(context.Background(), *accounts, *deposits, *writers, *rounds, *pause)
	if err != nil {
		fmt.Fprintln(os.Stderr, "append:", err)
		os.Exit(1)
	}
	fmt.Printf("appended %d events to %d accounts\n", n, *accounts)
}

func run(ctx context.Context, accounts, deposits, writers, rounds int, pause time.Duration) (int64, error) {
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		return 0, fmt.Errorf("DATABASE_URL is not set")
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	var appended atomic.Int64
	var mu sync.Mutex // versions: each writer owns its accounts, the lock is for the map
	versions := map[string]int64{}
	for round := range rounds {
		if round > 0 && pause > 0 {
			time.Sleep(pause)
		}
		g, gctx := errgroup.WithContext(ctx)
		for w := range writers {
			g.Go(func() error {
				for i := w + 1; i <= accounts; i += writers {
					id := fmt.Sprintf("acct-%04d", i)
					mu.Lock()
					version, known := versions[id]
					mu.Unlock()
					if !known {
						if version, err = eventstore.AggregateVersion(gctx, pool, events.AccountAggregateType, id); err != nil {
							return err
						}
					}
					var evs []events.AccountEvent
					if version == 0 {
						evs = append(evs, events.AccountOpened{Owner: fmt.Sprintf("owner %d", i)})
					}
					for range deposits {
						evs = append(evs, events.MoneyDeposited{Amount: 10})
					}
					evs = append(evs, events.MoneyWithdrawn{Amount: 5})
					// Exact(version): a ConcurrencyError if someone else appended in between.
					res, err := events.AppendAccount(gctx, pool, id, eventstore.Exact(version), evs...)
					if err != nil {
						return err
					}
					mu.Lock()
					versions[id] = res.Version
					mu.Unlock()
					appended.Add(int64(len(evs)))
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return appended.Load(), err
		}
	}
	return appended.Load(), nil
}
