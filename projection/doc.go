// Package projection runs projections: it feeds the events of the store, partition by
// partition, to a [Handler] that updates a read model, exactly once.
//
// # Processing
//
// Each (projection, partition) is processed by a loop of transactions. One batch:
//
//  1. read the partition's checkpoint (a position and its holes, see eventstore.Cursor)
//     and the events after it, gap-safely and past running transactions
//     (eventstore.ScanBatch: the events of holes that have ended, then those after the
//     position), filtered in SQL by partition (FNV-1a hash of the aggregate id mod the
//     partition count; through the index of the partition count, which Run builds and
//     drops, see [EnsurePartitionIndex], so that each partition reads only its own
//     rows) and event type; with nothing to do, roll back (an idle poll takes no
//     transaction id);
//  2. lock the checkpoint row (SELECT … FOR UPDATE) and check that it has not moved
//     since it was read; if another worker of the same partition moved it, this batch
//     is fenced off and read again;
//  3. call the handler for each event with the batch's pgx.Tx;
//  4. move the checkpoint with a compare-and-set (only from the position it was read
//     at, only in the layout generation the worker runs, only while that layout is in
//     force), and commit.
//
// The read model's writes and the checkpoint commit together, so an event is applied
// exactly once to a read model in the same database, whatever crashes, restarts or
// duplicate workers happen. The new checkpoint remembers every transaction the read
// passed while it was running as a hole, so nothing that commits late is skipped and
// nothing that stays open holds the partition back. When a read finds less than a full
// batch, everything of the partition up to the head of the stream was in it, and an
// idle partition's checkpoint moves up to the head now and then; so a partition that
// receives few events still keeps up with the stream (which matters when the
// partition count changes). While catching up
// (the previous batch was full) a worker reuses the checkpoint it just committed
// instead of reading it again; the lock in step 2 still checks it. It also reads the
// next batch ahead, on a second pool connection, while the current one is handled and
// committed: that read is step 1 of the next batch done early (it starts right after
// the cursor the current batch leaves, takes no lock and no transaction id), so it is
// used exactly when the current batch commits, and discarded on any failure, fence,
// rollback, layout change or shutdown.
//
// A read returns up to max(BatchSize, 5000) events (in a process that may run more
// than four partitions, 20,000 divided by their number, but never fewer than
// BatchSize), and the partition handles them in transactions of BatchSize events (a
// BatchSize left at 0 adapts between DefaultBatchSize and a whole read, see
// [Config.BatchSize]): the rest of a read is the next batch, without a statement of
// its own. Handling the rest of a read later is the same as reading again
// from the cursor the batch before it left, in the read's snapshot (both are cut from
// the same rows; eventstore.Batch.Next), so each of those batches still locks the
// checkpoint and moves it by compare-and-set; after any failure or fence the rest is
// dropped and the partition reads again from its checkpoint. A statement's fixed
// work (its executor, snapshot and index descent, a round trip) is then paid once per
// 5000 events, and the read of the next 5000 overlaps the handling of these.
//
// A projection that is not partitioned reads the whole stream in one partition, and
// its one read at a time on the server is then what limits its catch-up when its
// handlers are fast. While it finds the next read still on its way when it needs it,
// it keeps a second read in flight, after the next one, at a predicted cursor: where
// the next read will end, found by a query that returns one row
// (readsql.ReadBoundary: the position of the read's last event among the events every
// later snapshot sees alike). A read ahead is taken only when the partition's
// checkpoint is exactly at its cursor, so a wrong prediction costs that read, never an
// event; the partition then holds up to three reads.
//
// An empty read waits for a notification (appends notify the channel esgen_events,
// after their commit or at it, see the eventstore package; one dedicated connection
// per [Run] listens and wakes every partition) or for the poll interval with jitter. A notification arrives after the appending
// transaction committed, and reads do not wait for older running transactions, so
// the read it triggers sees the events it announced.
//
// # Failures
//
// A handler error rolls the batch back. The events before the failing one are then
// committed in a smaller batch, and the failing event is retried alone with
// exponential backoff and jitter, up to Config.MaxRetries; after that the partition
// stops with a [*HandlerError] naming projection, partition, event id, type,
// aggregate and position, and its checkpoint stays just before the event. A panic is
// such an error (a [*PanicError], whose stack is logged once per event); an error that
// retrying cannot cure (a payload that does not decode, or one marked with
// [Permanent]) stops the partition without the retries. An event skipped on purpose
// ([Skip], esgen skip) is passed without calling the handler. Transient database
// errors (connection loss, server shutdown or restart, serialization failure,
// deadlock, too many connections) are retried without limit, with backoff up to
// Config.MaxRetryBackoff (5 s), logged at warn level (the first, then every 30 s) and
// their end at info level. [Run] returns on the first fatal error after stopping the
// other partitions (with Config.KeepStopped, a partition stopped by its handler waits
// for its event to be skipped instead, while the others go on); when its context ends
// it lets each batch in hand finish (within Config.ShutdownTimeout, 25 s) and returns
// nil. An [Observer] (Config.Observer) receives every partition's state, batches and
// lag: package projector serves them as Prometheus metrics and health checks.
//
// # Logs
//
// With log/slog: at start the projection, partition key and partition count; every
// Config.ProgressInterval in which it handled events, and at exit, the number of events
// the partition processed and its checkpoint; at debug level every event handled
// (position, aggregate, type, id). Positions print as transaction/position
// (eventstore.Position.String), as esgen status prints them.
//
// # Changing the partition count
//
// esgen_projections holds each projection's layout: its partition count and a
// generation. Checkpoints are keyed by (projection, generation, partition). The count
// changes only on purpose: [Rescale] (esgen rescale), or [Run] with Config.Rescale and
// a new count. Run with a count that differs from the projection's, without Rescale,
// refuses to start with a [*CountMismatchError] and writes nothing; the count is at
// most [MaxPartitions]. A switch is one transaction, linear in the old and the new
// count:
//
//  1. lock the projection row (layout changes are serialized);
//  2. lock the live checkpoints of the old layout: batches in flight on them commit
//     first;
//  3. W, the low watermark, is the meet of those checkpoints (eventstore.Meet): the
//     oldest of their positions, with their holes below it; every event W counts as
//     handled, each old checkpoint handled;
//  4. mark the old checkpoints retired (kept as they are), bump the generation, and
//     insert a checkpoint at W for every partition of the new layout (so partitions
//     that never run exist and hold W back).
//
// A new-layout partition reads after its checkpoint and leaves out, in SQL, events
// that a retired layout already handled: those in the retired partition
// hash mod old count that its retired checkpoint counts as handled (at or before it,
// not in one of its holes), with one index probe per event and retired count. No event
// is replayed and none is skipped, also when the
// old partitions were uneven or some never ran. A retired layout is deleted once the
// low watermark of every live checkpoint has passed all of its checkpoints
// (eventstore.Passed). The cost of a switch is one short transaction plus, for the new
// workers, scanning (not handling) the events between W and the old checkpoints.
//
// Workers of the old layout find their checkpoint retired at their next batch (the
// compare-and-set also fails) and stop with a [*LayoutChangedError]: "partition count
// changed from N to M (generation g); restart this worker with TOTAL_PARTITIONS=M".
//
// # Design notes
//
// Beyond the plain loop (lock, read, handle, compare-and-set, commit) three choices
// matter. Reading before locking keeps idle polls free of transaction ids (each
// transaction with an id becomes a short hole in every other reader's checkpoint), so
// only batches with work take one, and two workers of one partition still take turns
// (the second finds the checkpoint moved and is fenced off). Letting an idle
// partition's checkpoint follow the head keeps the watermark of a later switch close to
// the head, so a switch re-scans little, and lets retired layouts be dropped soon after a
// switch. Keeping retired checkpoints instead of merging them into one position is
// what makes a switch exact when the old partitions were uneven: no single position
// separates handled from unhandled events then.
//
// # History: newly handled types and rebuilds
//
// Before preparing the layout, [Run] checks the projection's history (history.go). A
// projection that now handles an event type with events at or before its checkpoints
// does not start ([*UnhandledHistoryError], matched by [ErrDecisionNeeded]) until the
// events are accepted as skipped ([AcceptSkip]) or the projection is rebuilt
// ([RequestRebuild]). A requested rebuild fences the running workers off (new
// generation, checkpoints deleted: they stop with a [*RebuiltError]) and is carried out
// by the next Run, which calls [Projection.Reset] in the transaction that creates the
// checkpoints at the start of the stream.
//
// # Automatic assignment
//
// With Config.AutoAssign, the workers of a projection share its partitions through
// leases in PostgreSQL (assign.go): each registers with a heartbeat, claims a fair share
// of the layout's leases (free ones, then expired ones) and renews them on a dedicated
// connection; a dead worker's partitions are claimed by the others once its leases
// expire, a stopping worker releases its own after its batch, a worker over its share
// releases the surplus at a batch boundary. Every claim increments the lease's token,
// and a batch commits only while its worker holds the lease with the token it claimed
// (checked and locked in the batch's transaction right before the checkpoint moves),
// besides the checkpoint's compare-and-set, which stays the final fence. Static and
// auto workers are not mixed on a projection ([*AssignmentConflictError]); a layout
// change stops auto workers like static ones. The changes are reported to an Observer
// that implements [AssignmentObserver].
//
// # Running
//
// [Run] runs partitions of a projection in the calling process. The whole main of a
// generated projector binary (flags and environment, logging, signals, exit codes) is
// the package projector around it. [Status], [Rescale], [Skip], [Skipped] and [Reset]
// back the esgen status, rescale, skip and reset commands.
//
// # What the package holds
//
// The runtime API and the batch loop: layouts, checkpoints and leases (sql/queries), the batch
// read (its statement is rendered by internal/readsql, its rows decoded by
// eventstore.ScanBatch), handling, retries and fencing. Listening for appends is
// internal/notify. It must not know processes (flags, environment, signals, exit codes:
// package projector) nor generated code: a [Projection] is a name, event types and a
// [Handler].
package projection
