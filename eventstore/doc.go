// Package eventstore appends events to aggregates and reads them back from PostgreSQL.
//
// # Appending
//
// [Append] writes all events of one call to one aggregate in one statement (one round
// trip) inside the caller's transaction or on a pool. A single event, the common case,
// is appended by a prepared statement with scalar parameters (the lock, the aggregate
// head and the insert in one statement); several go through the SQL function
// esgen_append and its arrays. Both follow the same rules. The expected version makes the
// write conditional: [Any] always appends, [NoStream] only to a new aggregate, and
// [Exact] only when the aggregate is at that version; otherwise the error is an
// [*ConcurrencyError] that names the aggregate and both versions ([ErrConcurrency]
// matches it with errors.Is). Concurrent [Any] appends to one aggregate never fail:
// appends to one aggregate are serialized by a transaction-level lock.
//
// # Concurrent appends on a pool share statements
//
// Single-event appends given a pool run at most two statements at once per pool. An
// append that finds both taken waits, and when one ends, the appends waiting for it
// go together: one event for each of up to 64 distinct aggregates in one statement and
// one commit (a second append to the same aggregate waits for the next one). A lone
// writer never waits. Each append in such a statement keeps the rules of an append of
// its own: its aggregate's lock is taken before the transaction id, its expected
// version is checked against the head. The locks are only tried, so the statement never
// waits for one and takes part in no deadlock; an append whose lock is held elsewhere,
// whose expected version does not match, or that a failed statement took down with it
// (a statement that fails writes nothing) runs again alone, and so gets the result or
// the error it would have got alone. Appends that share a statement become visible at
// one commit. On a durable server that saves commits, each a WAL flush
// (docs/benchmarks.md has the figures). Cancelling the context of an append that
// waits for a statement returns at once; one whose statement is on its way gets that
// statement's outcome (the statement is cancelled only when every append in it is).
//
// # Reading without gaps and without waiting
//
// Positions come from an identity column and are taken before commit, so a reader that
// trusts "position > checkpoint" skips an event whose transaction commits after a
// younger one. esgen orders the stream by (transaction id, position), and a
// [Position] holds both. Two readers follow it:
//
//   - [ReadFrom] reads gap-safely without waiting: in one statement and one snapshot
//     it reads past transactions that are still running and returns a [Batch] whose
//     Next method gives the following [Cursor]: a position plus the holes, the running
//     transactions it passed, whose events are returned by a later read once they
//     have ended. A transaction left open anywhere on the server delays only its own
//     events. The projection runtime reads this way. It must run on the primary
//     ([ErrStandby]).
//   - [ReadAll] is commit-safe: it returns only events of transactions older than
//     every transaction still running, so its positions are cursors without holes.
//     The cost: a transaction that has written anything holds it back until it ends,
//     on the whole server (PostgreSQL's snapshots span all databases).
//
// Because appends to one aggregate are serialized before the transaction gets its id
// (and an append that would break that order fails with 40001), each aggregate's events
// arrive in version order with either reader.
//
// # Notifications
//
// Appends notify the channel esgen_events, so idle projections wake within
// milliseconds. A transaction that has called NOTIFY holds a server-wide lock from
// just before its commit until the commit is done (through the WAL flush on a durable
// server), so notifying transactions commit one at a time. Appends therefore notify
// after their commit where esgen owns the transaction: [Append] given a connection
// outside a transaction sends BEGIN, the append with its notification off, COMMIT and
// then pg_notify as one pipeline (one round trip); the server skips the rest of a
// pipeline after an error, so the notification follows only a successful commit.
//
// On a pool, concurrent appends share notifications: a notification sent after several
// commits wakes the listeners for all of them, and the pool has at most one on its way
// at a time. A single-event append that finds none on its way carries one in its
// pipeline as above (a lone writer always does); one that finds one on its way sends
// the append alone and, once it committed, leaves its notification to the next one,
// sent by the next append that carries one or by a goroutine of the pool's: at once,
// or, when it has just sent one, a millisecond after the start of that one, so that a
// busy pool sends about one notification per millisecond. Append may then return
// shortly before the listeners are woken. A batch append
// on a pool carries its own notification. Either way a failed append notifies nobody.
// A notification sent as a transaction of its own commits with synchronous_commit off:
// NOTIFY gives its transaction an id (and so a commit record), and it would otherwise
// hold NOTIFY's lock through a WAL flush.
//
// In a transaction of the caller's an append notifies at that transaction's commit,
// inside it (and not at all when it rolls back), which keeps the lock through the
// commit. To avoid that, call [DeferNotify] in the transaction before appending and
// [NotifyAppended] after the commit; a transaction that defers and then forgets
// NotifyAppended wakes nobody, and its events are found at the projections' next poll
// (1 s by default). The setting esgen.notify = off (in the connection URL as
// ?esgen.notify=off, with SET, or ALTER ROLE/DATABASE … SET) turns notifications of
// appends off altogether, for writers whose projections can live with polling; set in
// the connection's configuration (the URL), it also keeps an append on a pool a single
// statement.
//
// # Partitions
//
// Each event stores the FNV-1a-32 hash of its aggregate id; partition k of n reads the
// events whose hash mod n is k, filtered in SQL ([PartitionOf], [Hash]). All events of
// one aggregate are in one partition.
//
// # Decoding
//
// [ScanEvents] turns rows of esgen_events into [Event] values; every read of the store
// and of the projection runtime decodes with it. The read statements themselves are
// rendered in one place, internal/readsql.
//
// The package is the bottom layer: it knows the event tables and esgen_append, and
// nothing about projections, checkpoints or how a process runs. Its API speaks in its
// own types (no generated sqlc type appears in it).
package eventstore
