// Command seed appends the shop's first orders with the code of the first spec: six
// orders (version-1 OrderPlaced), three of them shipped. TestEndToEndLivingSpec
// copies it to cmd/seed.
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"example.com/shop/generated/events"
	"github.com/esgen-dev/esgen/eventstore"
)

func main() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	for i := range 6 {
		id := fmt.Sprintf("o-%d", i)
		evs := []events.OrderEvent{events.OrderPlaced{CustomerID: "customer-" + id, Amount: int64(10 * (i + 1))}}
		if i%2 == 0 {
			evs = append(evs, events.OrderShipped{Carrier: "dhl"})
		}
		if _, err := events.AppendOrder(ctx, pool, id, eventstore.NoStream, evs...); err != nil {
			log.Fatal(err)
		}
	}
}
