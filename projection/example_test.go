package projection_test

import (
	"context"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projection"
)

// Partitions 0 and 1 of 4 in this process, until Ctrl+C.
func ExampleRun() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	p := projection.Projection{
		Name:        "audit",
		Partitioned: true,
		Handler: projection.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *eventstore.Event) error {
			_, err := tx.Exec(ctx, `INSERT INTO audit_log (event_id, type) VALUES ($1, $2)`, ev.EventID, ev.Type)
			return err
		}),
	}
	err = projection.Run(ctx, pool, p, projection.Config{
		TotalPartitions: 4,
		Partitions:      []int{0, 1},
		BatchSize:       500,
		PollInterval:    2 * time.Second,
	})
	if err != nil {
		log.Fatal(err) // a handler failed past its retries, or the partition count changed
	}
}

// The state of a projection, as esgen status shows it.
func ExampleStatus() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	st, err := projection.Status(ctx, conn, "balances")
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range st.Partitions {
		log.Printf("partition %d/%d: checkpoint %s, lag %d, last moved %s", p.Key, p.Count, p.Checkpoint, p.Lag, p.LastMoved)
	}
	if st.Rescaling() {
		log.Printf("changing the partition count from %d to %d", st.PreviousCount, st.PartitionCount)
	}
}
