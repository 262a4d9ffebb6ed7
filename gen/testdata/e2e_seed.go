// Command seed appends the accounts' events with the generated helpers. TestEndToEnd
// copies it to cmd/seed of the module it builds.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"example.com/bank/generated/events"
	"github.com/esgen-dev/esgen/eventstore"
)

func main() {
	accounts := flag.Int("accounts", 1, "accounts to open, four events each")
	flag.Parse()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	for i := range *accounts {
		id := fmt.Sprintf("acct-%02d", i)
		note := "salary"
		if _, err := events.AppendAccount(ctx, pool, id, eventstore.NoStream,
			events.AccountOpened{Owner: "owner of " + id, Currency: "EUR"},
			events.MoneyDeposited{Amount: int64(100 + i), Note: &note},
		); err != nil {
			log.Fatal(err)
		}
		res, err := events.AppendAccount(ctx, pool, id, eventstore.Exact(2),
			events.MoneyWithdrawn{Amount: int64(i / 2)},
			events.MoneyDeposited{Amount: 5},
		)
		if err != nil {
			log.Fatal(err)
		}
		if res.Version != 4 {
			log.Fatalf("%s: version %d after 4 events", id, res.Version)
		}
	}
	// A stale expected version is refused and appends nothing.
	if _, err := events.AppendAccount(ctx, pool, "acct-00", eventstore.Exact(1), events.MoneyDeposited{Amount: 1}); !errors.Is(err, eventstore.ErrConcurrency) {
		log.Fatalf("stale append: %v, want eventstore.ErrConcurrency", err)
	}
}
