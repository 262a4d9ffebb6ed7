// Command append appends sample events to the example's event store: it opens the
// accounts acct-001 … acct-N (those not opened yet), then deposits 10 into each of them
// -deposits times and withdraws 5 once, one append (one transaction) per account,
// with the typed events.AppendAccount helper and optimistic concurrency.
//
//	go run ./cmd/append -accounts 10 -deposits 5
//
// It connects to DATABASE_URL. Running it again appends more events to the same accounts.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/examples/single-worker/generated/events"
)

func main() {
	accounts := flag.Int("accounts", 10, "number of accounts")
	deposits := flag.Int("deposits", 5, "deposits of 10 per account (then one withdrawal of 5)")
	flag.Parse()
	if err := run(context.Background(), *accounts, *deposits); err != nil {
		fmt.Fprintln(os.Stderr, "append:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, accounts, deposits int) error {
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		return fmt.Errorf("DATABASE_URL is not set")
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	total, opened := 0, 0
	for i := 1; i <= accounts; i++ {
		id := fmt.Sprintf("acct-%03d", i)
		version, err := eventstore.AggregateVersion(ctx, pool, events.AccountAggregateType, id)
		if err != nil {
			return err
		}
		var evs []events.AccountEvent
		if version == 0 {
			evs = append(evs, events.AccountOpened{Owner: fmt.Sprintf("owner %d", i)})
			opened++
		}
		for range deposits {
			evs = append(evs, events.MoneyDeposited{Amount: 10})
		}
		evs = append(evs, events.MoneyWithdrawn{Amount: 5})
		// Exact(version): fails with a ConcurrencyError if someone appended in between.
		if _, err := events.AppendAccount(ctx, pool, id, eventstore.Exact(version), evs...); err != nil {
			return err
		}
		total += len(evs)
	}
	fmt.Printf("appended %d events to %d accounts (%d opened)\n", total, accounts, opened)
	return nil
}
