package demo

import (
	"fmt"
	"os"
	"strconv"

	balancesgen "github.com/esgen-dev/esgen/internal/demo/generated/projections/balances"
	"github.com/esgen-dev/esgen/internal/demo/projections/balances"
	"github.com/esgen-dev/esgen/projector"
)

// WorkerMain is the main of a demo worker process: the generated balances projection
// with the demo's handlers, run by projector.Main from PARTITION_KEY,
// TOTAL_PARTITIONS and DATABASE_URL. It does not return.
func WorkerMain() {
	k, err := strconv.Atoi(os.Getenv("PARTITION_KEY"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "esgen demo worker: PARTITION_KEY=%q is not a number\n", os.Getenv("PARTITION_KEY"))
		os.Exit(2)
	}
	projector.Main(balancesgen.New(&balances.Handlers{PartitionKey: k}))
}
