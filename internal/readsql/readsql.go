// Package readsql writes the statements that read esgen_events: the global stream
// ([ReadAll], behind eventstore.ReadAll), a projection's batch ([ReadPartition], with
// the partition count and key as parameters or written into the text), a partition's
// lag ([PartitionLag]), the events that retired layouts handled ([CountHandledAfter])
// and one aggregate's events ([ReadAggregate]).
//
// Each condition they share is written once, here: the column list, "after a position
// in commit-safe order", the partition filter, the event type filter and the
// retired-layout predicate. A change to which events a reader gets, or how a partition
// selects them, is made in this file. Every other statement of esgen is in sql/queries
// (sqlc); of those, only the visible head of the stream (StreamHead, and GetCheckpoint
// with it) also depends on commit-safe visibility.
//
// It renders SQL text and its arguments, nothing more: it must not know connections,
// the Go event type or how rows are decoded (eventstore.ScanEvents), nor how a
// projection runs its batches.
package readsql

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"
)

// Columns are the columns of esgen_events in table order. Every read of events selects
// them in this order, and eventstore.ScanEvents decodes them in it.
var Columns = [...]string{
	"global_position", "transaction_id", "event_id", "aggregate_type", "aggregate_id", "aggregate_version",
	"event_type", "event_version", "partition_hash", "payload", "metadata", "correlation_id", "causation_id", "created_at",
}

// columnList is Columns as a select list on esgen_events e.
var columnList = "e." + strings.Join(Columns[:6], ", e.") + ",\n       e." + strings.Join(Columns[6:], ", e.")

// Statement is a rendered statement and its arguments, in the order of its parameters.
// Each statement's text starts with "-- name: <Name>", as sqlc's do, so that
// pg_stat_statements shows which one it is.
type Statement struct {
	SQL  string
	Args []any
}

// Filter selects events after a position, in commit-safe order, of one partition and
// some event types.
type Filter struct {
	AfterTransactionID uint64
	AfterPosition      int64
	TotalPartitions    int      // 0 or 1: every partition
	PartitionKey       int      // with TotalPartitions > 1: 0 .. TotalPartitions-1
	EventTypes         []string // empty: every type
}

// ReadAll reads up to limit events of the stream after a position in commit-safe order:
// only events of transactions older than every running one, so nothing that commits
// later can land before the events returned. The partition and event type filters run
// in SQL.
func ReadAll(f Filter, limit int) Statement {
	var b builder
	return b.read("ReadAll", b.filter(f, ordered), limit)
}

// PartitionRead is the read of one batch of a projection's partition.
type PartitionRead struct {
	Filter
	Limit      int
	Projection string
	// SkipRetired leaves out the events that a retired layout of the projection
	// already handled (only needed while retired layouts exist).
	SkipRetired bool
	// Literal writes the partition count and key into the text as numbers (with
	// TotalPartitions > 1). Only then can PostgreSQL use an index on
	// (partition_hash % count) for every execution: the generic plan of a prepared
	// statement with the count as a parameter cannot match it.
	Literal bool
}

// ReadPartition is [ReadAll] for a projection's partition: with SkipRetired, events
// that a retired layout of the projection already handled are left out.
func ReadPartition(r PartitionRead) Statement {
	var b builder
	name, mode := "ReadPartition", ordered
	if r.Literal && r.TotalPartitions > 1 {
		name, mode = "ReadPartitionIndexed", literal
	}
	where := b.filter(r.Filter, mode)
	where = append(where, fmt.Sprintf("(NOT %s OR NOT %s)", b.param(r.SkipRetired, "boolean"), b.handledByRetired(r.Projection)))
	return b.read(name, where, r.Limit)
}

// PartitionLag counts the events of a partition after its checkpoint that a commit-safe
// reader can see now and that no retired layout of the projection handled: what the
// partition has left to do. (It selects the rows [ReadPartition] with SkipRetired
// would, without a limit.)
func PartitionLag(f Filter, projection string) Statement {
	var b builder
	where := append(b.filter(f, unordered), "NOT "+b.handledByRetired(projection))
	return b.count("PartitionLag", "lag", where)
}

// CountHandledAfter counts the events after a position that the retired layouts of a
// projection already handled: the rows a new layout scans and skips after a change of
// the partition count.
func CountHandledAfter(afterTransactionID uint64, afterPosition int64, projection string) Statement {
	var b builder
	return b.count("CountHandledAfter", "handled", []string{
		b.after(afterTransactionID, afterPosition),
		b.handledByRetired(projection),
	})
}

// ReadAggregate reads one aggregate's events with versions from..to (inclusive), in
// version order.
func ReadAggregate(aggregateType, aggregateID string, from, to int64) Statement {
	var b builder
	where := []string{
		"e.aggregate_type = " + b.param(aggregateType, "text"),
		"e.aggregate_id = " + b.param(aggregateID, "text"),
		"e.aggregate_version >= " + b.param(from, "bigint"),
		"e.aggregate_version <= " + b.param(to, "bigint"),
	}
	return Statement{SQL: b.selectEvents("ReadAggregate", where) + "\nORDER BY e.aggregate_version", Args: b.args}
}

// builder renders one statement: it numbers the parameters in the order they appear.
type builder struct{ args []any }

// param adds v as the next parameter and returns its placeholder, cast to typ.
func (b *builder) param(v any, typ string) string {
	b.args = append(b.args, v)
	return fmt.Sprintf("$%d::%s", len(b.args), typ)
}

// after: events after a position in commit-safe order, (transaction id, position).
func (b *builder) after(transactionID uint64, position int64) string {
	return fmt.Sprintf("(e.transaction_id, e.global_position) > (%s, %s)",
		b.param(pgtype.Uint64{Uint64: transactionID, Valid: true}, "xid8"), b.param(position, "bigint"))
}

// committed: only events of transactions older than every transaction still running.
const committed = "e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())"

// filter is the condition of a read: after the position, committed, in the partition,
// of the event types.
func (b *builder) filter(f Filter, mode partitionMode) []string {
	return []string{b.after(f.AfterTransactionID, f.AfterPosition), committed, b.partition(f, mode), b.eventTypes(f.EventTypes)}
}

// partitionMode is how the partition filter is written.
type partitionMode int

const (
	// ordered: the count and key as parameters (a count of 0 or 1 selects every
	// event), for a read in commit-safe order. It adds "OR (SELECT false)", which
	// never matches (it is computed once per execution) but keeps the planner on the
	// commit-order index: it has no statistics for partition_hash % n and guesses that
	// 0.5% of the rows match, so near the end of a large stream it expects a batch to
	// need every remaining row and picks a bitmap scan of all of them plus a sort
	// (43 ms instead of 1 ms per batch on 1,000,000 events, 4 partitions). The OR with
	// an unknown boolean raises its guess to about a half.
	ordered partitionMode = iota
	// unordered: as ordered, without the hint, for a count.
	unordered
	// literal: the count and key written as numbers, as an index on
	// (partition_hash % count) is written, so that the planner can use it.
	literal
)

// partition: the event's partition_hash mod the count is the key.
func (b *builder) partition(f Filter, mode partitionMode) string {
	if mode == literal {
		return fmt.Sprintf("e.partition_hash %% %d = %d", f.TotalPartitions, f.PartitionKey)
	}
	total, key := b.param(int32(f.TotalPartitions), "integer"), b.param(int32(f.PartitionKey), "integer")
	cond := fmt.Sprintf("%s <= 1 OR e.partition_hash %% %s = %s", total, total, key)
	if mode == ordered {
		cond += " OR (SELECT false)"
	}
	return "(" + cond + ")"
}

// eventTypes: the event is of one of types, or types is empty.
func (b *builder) eventTypes(types []string) string {
	if types == nil {
		types = []string{}
	}
	t := b.param(types, "text[]")
	return fmt.Sprintf("(cardinality(%s) = 0 OR e.event_type = ANY (%s))", t, t)
}

// handledByRetired: a retired layout of the projection already handled the event (it
// is in that layout's partition and at or before its checkpoint).
func (b *builder) handledByRetired(projection string) string {
	return fmt.Sprintf(`EXISTS (
      SELECT 1 FROM esgen_checkpoints r
      WHERE r.projection = %s AND r.retired
        AND r.partition_key = e.partition_hash %% r.partition_count
        AND (e.transaction_id, e.global_position) <= (r.last_transaction_id, r.last_position))`, b.param(projection, "text"))
}

func (b *builder) selectEvents(name string, where []string) string {
	return "-- name: " + name + "\nSELECT " + columnList + "\nFROM esgen_events e\nWHERE " + strings.Join(where, "\n  AND ")
}

// read selects up to limit events in commit-safe order.
func (b *builder) read(name string, where []string, limit int) Statement {
	sql := b.selectEvents(name, where) + "\nORDER BY e.transaction_id, e.global_position\nLIMIT " + b.param(int32(limit), "integer")
	return Statement{SQL: sql, Args: b.args}
}

func (b *builder) count(name, as string, where []string) Statement {
	sql := "-- name: " + name + "\nSELECT count(*)::bigint AS " + as + "\nFROM esgen_events e\nWHERE " + strings.Join(where, "\n  AND ")
	return Statement{SQL: sql, Args: b.args}
}
