// Package eventstore appends events to aggregates and reads them back from PostgreSQL.
//
// # Appending
//
// [Append] writes all events of one call to one aggregate in one statement (one round
// trip) inside the caller's transaction or on a pool. The expected version makes the
// write conditional: [Any] always appends, [NoStream] only to a new aggregate, and
// [Exact] only when the aggregate is at that version; otherwise the error is an
// [*ConcurrencyError] that names the aggregate and both versions ([ErrConcurrency]
// matches it with errors.Is). Concurrent [Any] appends to one aggregate never fail:
// appends to one aggregate are serialized by a transaction-level lock.
//
// # Reading in commit-safe order
//
// Positions come from an identity column and are taken before commit, so a reader that
// trusts "position > checkpoint" skips an event whose transaction commits after a
// younger one. [ReadAll] instead returns only events of transactions older than every
// transaction still running, ordered by (transaction id, position), and a [Position]
// holds both. Such a reader never moves past an event that can still appear. The cost:
// a transaction that has written anything (it has a transaction id) holds every reader
// back until it ends, and PostgreSQL's snapshot spans the whole server, so this holds for
// a transaction in any database of that server. Read-only transactions do not count.
// Keep writing transactions short; docs/benchmarks.md measures the effect.
// Because appends to one aggregate are serialized before the transaction gets its id,
// each aggregate's events arrive in version order.
//
// # Notifications
//
// Each append notifies the channel esgen_events when it commits, so idle projections
// wake within milliseconds. NOTIFY serializes the commits of notifying transactions
// on a server-wide lock; where many writers append concurrently and projections can
// live with their poll interval, turn it off with the setting esgen.notify = off: in
// the connection URL (?esgen.notify=off), with SET, or ALTER ROLE/DATABASE … SET.
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
