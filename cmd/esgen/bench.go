package main

import (
	"context"
	"errors"
	"io"

	"github.com/esgen-dev/esgen/internal/bench"
)

func init() {
	// A bench worker process is this binary started again by `esgen bench`.
	bench.RunWorkerIfRequested()
	register("bench", "measure esgen against PostgreSQL's raw limit", runBench)
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := bench.Command(ctx, args, stdout, stderr)
	var ue bench.UsageError
	if errors.As(err, &ue) {
		return usageError{ue.Err}
	}
	return err
}
