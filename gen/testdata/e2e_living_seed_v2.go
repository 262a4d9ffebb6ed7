// Command seed appends orders with the code of the second spec: four new orders
// (version-2 OrderPlaced), two of them shipped, and the shipment of an old order.
// TestEndToEndLivingSpec copies it to cmd/seed.
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
	for i := range 4 {
		id := fmt.Sprintf("n-%d", i)
		evs := []events.OrderEvent{events.OrderPlaced{BuyerID: "buyer-" + id, Amount: int64(100 * (i + 1)), Currency: "USD"}}
		if i < 2 {
			evs = append(evs, events.OrderShipped{Carrier: "ups"})
		}
		if _, err := events.AppendOrder(ctx, pool, id, eventstore.NoStream, evs...); err != nil {
			log.Fatal(err)
		}
	}
	// The typed read decodes the old order's version-1 event, upcast.
	old, err := events.ReadOrder(ctx, pool, "o-1")
	if err != nil {
		log.Fatal(err)
	}
	if placed, ok := old[0].(events.OrderPlaced); !ok || placed.BuyerID != "customer-o-1" || placed.Currency != "EUR" {
		log.Fatalf("ReadOrder(o-1) = %#v", old)
	}
	if _, err := events.AppendOrder(ctx, pool, "o-1", eventstore.Exact(int64(len(old))), events.OrderShipped{Carrier: "ups"}); err != nil {
		log.Fatal(err)
	}
}
