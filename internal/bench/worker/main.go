// Command worker is a projection catch-up worker for `esgen bench`, for when the
// benchmarking binary cannot start itself again:
//
//	go build -o /tmp/bench-worker ./internal/bench/worker
//	esgen bench --worker /tmp/bench-worker
//
// It is started by the bench with its task in the ESGEN_BENCH_WORKER environment
// variable; see internal/bench.
package main

import (
	"fmt"
	"os"

	"github.com/esgen-dev/esgen/internal/bench"
)

func main() {
	bench.RunWorkerIfRequested() // exits when started by the bench
	fmt.Fprintf(os.Stderr, "worker: a catch-up worker started by esgen bench (%s is not set)\n", bench.WorkerEnv)
	os.Exit(2)
}
