package projection_test

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/internal/pgtest"
	"github.com/esgen-dev/esgen/projection"
)

// Run stops every goroutine it started (partitions, listener, timers) before it
// returns. Not parallel: it counts the goroutines of the whole test binary, while the
// parallel tests are still paused.
func TestRunLeavesNoGoroutines(t *testing.T) {
	url := pgtest.NewDatabase(t)
	setup := newPool(t, url)
	if _, err := setup.Exec(context.Background(), readModelSchema); err != nil {
		t.Fatal(err)
	}
	setup.Close()
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()

	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	log, _ := testLogger(t)
	p := projection.Projection{Name: "rm", Partitioned: true, Handler: readModelHandler(nil)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- projection.Run(ctx, pool, p, projection.Config{TotalPartitions: 3, Logger: log}) }()
	appendN(t, pool, "a", 10, 2)
	waitApplied(t, pool, time.Minute, nil)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	pool.Close()

	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
			t.Fatalf("%d goroutines after Run returned and the pool closed, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
