// Package projector is the process around the projection runtime: the whole main of a
// projector binary. [Main] and [MainWith] read the settings from flags and the
// environment, set up log/slog, size the connection pool, turn SIGINT and SIGTERM into
// a graceful stop and map the outcome to an exit code (0 stopped, 1 failed, 2 bad
// settings, including a partition count that differs from the projection's, and a
// start that needs a decision first: newly handled event types with history); with
// --metrics-addr they serve Prometheus metrics, /healthz and /readyz (metrics.go: the
// projection.Observer of the process; docs/operations.md lists the metrics). The work
// itself is [projection.Run].
//
// Every generated cmd/<name>-projector/main.go is one call. When the user's handler
// package declares the constructor NewHandlers, the main hands it the process's
// dependencies ([Deps]: the pool, the logger, the partitions it runs) through
// [MainWith]:
//
//	projector.MainWith(balancesgen.New, func(ctx context.Context, deps projector.Deps) (balancesgen.Handler, error) {
//		return balances.NewHandlers(ctx, deps)
//	})
//
// and otherwise runs a zero Handlers value through [Main]:
//
//	projector.Main(balancesgen.New(&balances.Handlers{}))
//
// It must not know how batches are read, handled or checkpointed, nor any SQL: it
// creates the connection pool and hands it to projection.Run. Programs that embed
// projections in a process of their own call projection.Run directly and do not need
// it.
package projector
