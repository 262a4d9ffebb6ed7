// Package bench measures esgen against PostgreSQL's own limit, in one run, and prints
// one table (or JSON). It is the engine of `esgen bench` and of the go test benchmarks.
//
// Every esgen number stands beside a raw number taken in the same run on the same
// server, table and rows, so the ratio says how much of PostgreSQL's speed esgen keeps:
//
//   - Append: [eventstore.Append] with one event per transaction (1 and 8 writers) and
//     with 10, 100 and 1,000 events per call, against a plain multi-row INSERT of the
//     same rows with the same number of rows per statement (and COPY) into the same
//     esgen_events table, without version checks, locks or aggregate heads; and
//     single-event appends in a transaction of the caller's (notifying at its commit,
//     or after it with DeferNotify and NotifyAppended) against the raw INSERT in
//     BEGIN … COMMIT.
//   - Catch-up: a projection reading a preloaded stream from the start with 1 worker,
//     4 partitions in one process and 4 worker processes, with a no-op handler,
//     against one streaming SELECT of the same rows in the same order. Rows scanned
//     (pg_stat_user_tables) are set against rows returned, and peak memory is sampled
//     (heap in process; for worker processes the peak RSS each reads of itself, VmHWM).
//   - Upsert: a handler that upserts one read-model row per event, with its writes
//     queued (projection.Queue: one pipeline per batch) and with one round trip per
//     event, against a hand-written loop that sends the same upserts as one pgx.Batch
//     per transaction.
//   - Latency from append to handled, median and p99, woken by NOTIFY and by polling.
//   - Gap safety (what a long transaction costs the readers): catch-up with one
//     worker while its checkpoint carries holes (transactions in another database and
//     transactions that appended, open from before the stream was written), beside
//     the same catch-up with nothing open, both against a raw streaming read of that
//     stream; the latency of appends made while a transaction in another database,
//     or one that appended to the same store, stays open; and when the appending
//     transaction's own events are handled after it commits.
//   - Failover (automatic partition assignment, no raw row: these are times): three
//     projector processes with PARTITION_KEY=auto on 8 partitions; one is killed with
//     SIGKILL (or stopped with SIGTERM) and an event is appended to every partition at
//     once: the row is the time from the signal until all of them are handled, so for
//     SIGKILL it is about the default lease time, for SIGTERM the hand-over. A worker
//     then joins, and the time until it holds its fair share is the rebalance row.
//
// Each scenario also records the CPU time of the Go side and, where the server has
// pg_stat_statements loaded (the throw-away cluster does), the server's time by
// statement, so the report can say where the time went.
//
// Worker processes are the running binary started again with [WorkerEnv] set: a binary
// that runs benchmarks calls [RunWorkerIfRequested] first thing (cmd/esgen and this
// package's tests do), or names a separate worker binary in Config.WorkerBinary (see
// internal/bench/worker).
//
// Tests never assert timings; they check that each scenario runs and reports sane
// counts.
//
// It measures the runtime from outside, through its public API and its own statements
// (internal/readsql): it must not reach into the runtime's internals or keep copies of
// its SQL.
package bench
