// Package projector is the process around the projection runtime: the whole main of a
// projector binary. [Main] reads the settings from flags and the environment, sets up
// log/slog, sizes the connection pool, turns SIGINT and SIGTERM into a graceful stop
// and maps the outcome to an exit code (0 stopped, 1 failed, 2 bad settings); the work
// itself is [projection.Run].
//
// Every generated cmd/<name>-projector/main.go is one call:
//
//	projector.Main(balancesgen.New(&balances.Handlers{}))
//
// It must not know how batches are read, handled or checkpointed, nor any SQL: it
// creates the connection pool and hands it to projection.Run. Programs that embed
// projections in a process of their own call projection.Run directly and do not need
// it.
package projector
