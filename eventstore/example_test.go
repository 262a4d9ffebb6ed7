package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
	"github.com/esgen-dev/esgen/migrate"
)

// examplePool connects to a fresh, migrated database on the test server. In an
// application this is pgxpool.New(ctx, os.Getenv("DATABASE_URL")) after esgen migrate.
func examplePool(name string) *pgxpool.Pool {
	ctx := context.Background()
	srv, err := pgtest.SharedServer()
	if err != nil {
		log.Fatal(err)
	}
	_ = srv.DropDatabase(ctx, name)
	url, err := srv.CreateDatabase(ctx, name)
	if err != nil {
		log.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := migrate.Up(ctx, pool, migrate.All()); err != nil {
		log.Fatal(err)
	}
	return pool
}

func ExampleAppend() {
	ctx := context.Background()
	pool := examplePool("example_append")
	defer pool.Close()

	// Open an account: NoStream makes sure it does not exist yet.
	res, err := eventstore.Append(ctx, pool, "Account", "acct-1", eventstore.NoStream,
		eventstore.EventData{Type: "AccountOpened", Payload: []byte(`{"owner":"ann"}`)},
		eventstore.EventData{Type: "MoneyDeposited", Payload: []byte(`{"amount":100}`)})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("version after opening:", res.Version)

	// A writer that read version 1 is too late: the conflict names both versions.
	_, err = eventstore.Append(ctx, pool, "Account", "acct-1", eventstore.Exact(1),
		eventstore.EventData{Type: "MoneyWithdrawn", Payload: []byte(`{"amount":30}`)})
	fmt.Println(errors.Is(err, eventstore.ErrConcurrency), err)

	// Appends join the caller's transaction, so other writes commit with them.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := eventstore.Append(ctx, tx, "Account", "acct-1", eventstore.Exact(2),
			eventstore.EventData{Type: "MoneyWithdrawn", Payload: []byte(`{"amount":30}`)})
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	v, _ := eventstore.AggregateVersion(ctx, pool, "Account", "acct-1")
	fmt.Println("version now:", v)
	// Output:
	// version after opening: 2
	// true eventstore: concurrency conflict on Account "acct-1": expected version 1, actual 2
	// version now: 3
}

func ExampleReadAll() {
	ctx := context.Background()
	pool := examplePool("example_read_all")
	defer pool.Close()
	for _, id := range []string{"a", "b", "c", "d"} {
		if _, err := eventstore.Append(ctx, pool, "Account", id, eventstore.NoStream,
			eventstore.EventData{Type: "AccountOpened", Payload: []byte(`{}`)}); err != nil {
			log.Fatal(err)
		}
	}
	// Follow partition 1 of 2 from the start, in batches of 10, as a projection does:
	// keep the last position as the checkpoint and read after it, here until both
	// accounts of partition 1 (b and d) are read. An empty batch means that nothing
	// more is readable yet: a commit-safe read waits for every transaction still
	// running on the server, so poll.
	var checkpoint eventstore.Position
	for read := 0; read < 2; {
		batch, err := eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{
			After: checkpoint, Limit: 10, PartitionKey: 1, TotalPartitions: 2,
		})
		if err != nil {
			log.Fatal(err)
		}
		if len(batch) == 0 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for _, e := range batch {
			fmt.Println(e.AggregateID, e.Type, "partition", eventstore.PartitionOf(e.AggregateID, 2))
			read++
		}
		checkpoint = batch[len(batch)-1].Position
	}
	// Output:
	// b AccountOpened partition 1
	// d AccountOpened partition 1
}

func ExamplePartitionOf() {
	for _, id := range []string{"a", "b", "c", "d"} {
		fmt.Println(id, eventstore.Hash(id), eventstore.PartitionOf(id, 2))
	}
	fmt.Println(eventstore.CheckPartition(2, 2))
	// Output:
	// a 3826002220 0
	// b 3876335077 1
	// c 3859557458 0
	// d 3775669363 1
	// partition key 2 is out of range: with 2 partitions the key must be 0..1
}
