// Package readsql writes the statements that read esgen_events: the gap-safe read of
// a cursor's successors ([ReadFrom], behind eventstore.ReadFrom, and [ReadPartition], a
// projection's batch, with the partition count and key as parameters or written into
// the text), where a partition's full read will end ([ReadBoundary], for a read ahead
// at the cursor after it), the commit-safe read of the stream ([ReadAll], behind
// eventstore.ReadAll), a partition's lag ([PartitionLag]), the events that retired
// layouts handled ([CountHandledAfter]) and one aggregate's events ([ReadAggregate]).
//
// Each condition they share is written once, here: the column list, "after a
// position", "committed before every running transaction" (commit-safe), the
// partition filter, the event type filter and the retired-layout predicate (which
// knows about the holes of retired checkpoints). A change to which events a reader
// gets, or how a partition selects them, is made in this file. Every other statement
// of esgen is in sql/queries (sqlc).
//
// It renders SQL text and its arguments, nothing more: it must not know connections,
// the Go event type or how rows are decoded (eventstore.ScanEvents and
// eventstore.ScanBatch), nor how a projection runs its batches.
package readsql

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"
)

// Columns are the columns of esgen_events in table order. Every read of events selects
// them in this order, and eventstore.ScanEvents decodes them in it.
var Columns = [...]string{
	"global_position", "transaction_id", "event_id", "aggregate_type", "aggregate_id", "aggregate_version",
	"event_type", "event_version", "partition_hash", "payload", "metadata", "correlation_id", "causation_id", "created_at",
}

// types are the SQL types of Columns.
var types = [...]string{
	"bigint", "xid8", "uuid", "text", "text", "bigint",
	"text", "integer", "bigint", "jsonb", "jsonb", "uuid", "uuid", "timestamptz",
}

// A gap-safe read ([ReadFrom], [ReadPartition]) returns the columns of esgen_events
// (Columns) and nothing else, so that its event rows cost the server and the client
// what a plain read of the same rows costs. Its first row is the snapshot row: its
// global_position is NULL (no event's is), and its payload holds the statement's
// snapshot as a JSON object with the keys below: the snapshot's xmax and the
// transaction ids running in it (as strings of decimal digits), whether the server is
// a standby (in recovery), where the running ids are not known, and, when asked for,
// the position of the newest committed event (the head of the stream; absent when not
// asked for, null when there is none). Its other columns are NULL.
//
// The event rows follow: the rows of holes whose transactions have ended, then the
// rows after the cursor's position, each part in (transaction id, position) order. A
// hole's transaction id is below the cursor's (see eventstore.Cursor), so a row's
// transaction id says which part it is of.
const (
	SnapshotXmax              = "xmax"
	SnapshotRunning           = "running"
	SnapshotInRecovery        = "in_recovery"
	SnapshotHeadTransactionID = "head_transaction_id"
	SnapshotHeadPosition      = "head_position"
)

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

// Holes are the holes of a cursor (see eventstore.Cursor) as two parallel arrays.
type Holes struct {
	TransactionIDs []uint64
	Positions      []int64
}

// ReadFrom reads, in one statement and one snapshot, the successors of a cursor (its
// position f.After…, its holes): the snapshot row (xmax and running transaction ids),
// up to limit rows of holes whose transactions have ended (after each hole's
// position), and up to limit rows after the position, each part in (transaction id,
// position) order. It reads past running transactions instead of waiting for them.
func ReadFrom(f Filter, holes Holes, limit int) Statement {
	var b builder
	return b.gapSafe("ReadFrom", f, holes, ordered, b.param(int32(limit), "integer"), false, nil)
}

// ReadAll reads up to limit events of the stream after a position in commit-safe order:
// only events of transactions older than every running one, so nothing that commits
// later can land before the events returned. With holes (those of a cursor, see
// eventstore.Cursor) it also reads their events after each hole's position, so that
// it returns everything the cursor has not handled that is commit-safe now, all in
// commit-safe order. The partition and event type filters run in SQL.
func ReadAll(f Filter, holes Holes, limit int) Statement {
	var b builder
	if len(holes.TransactionIDs) == 0 {
		return b.read("ReadAll", b.filter(f, ordered), limit)
	}
	cond := and("\n     AND ", committed, b.partition(f, ordered), b.eventTypes(f.EventTypes))
	lim := b.param(int32(limit), "integer")
	txs, pos := b.param(xid8s(holes.TransactionIDs), "xid8[]"), b.param(holes.Positions, "bigint[]")
	after := b.after(f.AfterTransactionID, f.AfterPosition)
	sql := fmt.Sprintf(`-- name: ReadAllWithHoles
(SELECT %s
 FROM unnest(%s, %s) AS h(x, p)
 CROSS JOIN LATERAL (
   SELECT %s
   FROM esgen_events e
   WHERE e.transaction_id = h.x AND (e.transaction_id, e.global_position) > (h.x, h.p)
     AND %s
   ORDER BY e.transaction_id, e.global_position
   LIMIT %s) e)
UNION ALL
(SELECT %s
 FROM esgen_events e
 WHERE %s
     AND %s
 ORDER BY e.transaction_id, e.global_position
 LIMIT %s)
ORDER BY transaction_id, global_position
LIMIT %s`, columnList, txs, pos, columnList, cond, lim, columnList, after, cond, lim, lim)
	return Statement{SQL: sql, Args: b.args}
}

// PartitionRead is the read of one batch of a projection's partition.
type PartitionRead struct {
	Filter
	Limit      int
	Projection string
	// SkipRetired leaves out the events that a retired layout of the projection
	// already handled (only needed while retired layouts exist).
	SkipRetired bool
	// Holes are the holes of the partition's checkpoint.
	Holes Holes
	// Head asks for the head of the stream in the snapshot row (an index scan from
	// the newest end; it passes over the rows of running transactions).
	Head bool
	// Literal reads through the index on ((partition_hash % count), transaction_id,
	// global_position) (with TotalPartitions > 1; the caller knows it exists): the
	// count and key are written into the text as numbers, as the index is, and the
	// range after the cursor is written as a range of that index, so that every plan
	// of the statement reads only the partition's own rows.
	Literal bool
}

// pinned are the planner settings a partition read runs with, each with the value
// it is set to. PinPlan sets them for the read, UnpinPlan sets them back.
var pinned = [...][2]string{
	{"plan_cache_mode", "force_generic_plan"},
	{"enable_seqscan", "off"},
	{"enable_bitmapscan", "off"},
	{"enable_sort", "off"},
	{"jit", "off"},
}

// PinPlan and UnpinPlan surround a [ReadPartition] in its transaction (sent with it,
// in one round trip): PinPlan makes PostgreSQL read it with its generic plan, made
// once per connection for the prepared statement, in which the scan of esgen_events
// follows an index from the cursor in the read's order; UnpinPlan sets the settings
// back for the statements that follow (the handlers').
//
// Left to itself PostgreSQL plans the read afresh for every batch (a custom plan for
// the values, about a tenth of the read's server time), as the values let it price
// the custom plans lower, although the scan is the same. And when it expects fewer
// matching rows than the limit (a selective event type filter, a young index
// without statistics, a cursor near the end of the stream by stale statistics), it
// prefers reading every matching row after the cursor and sorting them, on every
// batch. With sequential scans, bitmap scans and sorts priced out, the ordered index
// scan is the plan (the hole rows, a few, are still sorted). The price put on the
// sort of the hole rows would turn on JIT compilation for every execution (some
// milliseconds): it is off for the read, which returns at most a batch.
var PinPlan, UnpinPlan = func() (string, string) {
	var pin, unpin []string
	for _, s := range pinned {
		pin = append(pin, fmt.Sprintf("set_config('esgen.%s', current_setting('%s'), true)", s[0], s[0]))
	}
	for _, s := range pinned {
		pin = append(pin, fmt.Sprintf("set_config('%s', '%s', true)", s[0], s[1]))
		unpin = append(unpin, fmt.Sprintf("set_config('%s', current_setting('esgen.%s'), true)", s[0], s[0]))
	}
	return "-- name: PinPlan\nSELECT " + strings.Join(pin, ", "), "-- name: UnpinPlan\nSELECT " + strings.Join(unpin, ", ")
}()

// ReadPartition is [ReadFrom] for a projection's partition: with SkipRetired, events
// that a retired layout of the projection already handled are left out.
func ReadPartition(r PartitionRead) Statement {
	var b builder
	name, mode := "ReadPartition", ordered
	if r.Literal && r.TotalPartitions > 1 {
		name, mode = "ReadPartitionIndexed", literal
	}
	var extra []string
	if r.SkipRetired {
		extra = append(extra, "NOT "+b.handledByRetired(r.Projection))
	}
	// The limit is written into the text: with it as a parameter, a generic plan
	// would be costed for a tenth of the rows after the cursor, never chosen, and the
	// read planned again on every batch.
	return b.gapSafe(name, r.Filter, r.Holes, mode, strconv.Itoa(r.Limit), r.Head, extra)
}

// PartitionLag counts the events of a partition that its checkpoint (position and
// holes) has not handled, that are committed now and that no retired layout of the
// projection handled: what the partition has left to do.
func PartitionLag(f Filter, holes Holes, projection string) Statement {
	var b builder
	cond := and("\n    AND ", b.partition(f, unordered), b.eventTypes(f.EventTypes), "NOT "+b.handledByRetired(projection))
	txs, pos := b.param(xid8s(holes.TransactionIDs), "xid8[]"), b.param(holes.Positions, "bigint[]")
	after := b.after(f.AfterTransactionID, f.AfterPosition)
	sql := fmt.Sprintf(`-- name: PartitionLag
SELECT (SELECT count(*) FROM esgen_events e
  WHERE %s
    AND %s)
 + (SELECT count(*) FROM unnest(%s, %s) AS h(x, p)
  JOIN esgen_events e ON e.transaction_id = h.x AND (e.transaction_id, e.global_position) > (h.x, h.p)
  WHERE %s)::bigint AS lag`, after, cond, txs, pos, cond)
	return Statement{SQL: sql, Args: b.args}
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
	return nonEmpty(b.after(f.AfterTransactionID, f.AfterPosition), committed, b.partition(f, mode), b.eventTypes(f.EventTypes))
}

// nonEmpty returns the conditions that are not empty: a filter that selects
// everything is left out of the text.
func nonEmpty(conds ...string) []string {
	out := conds[:0:0]
	for _, c := range conds {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

// prefixed writes each condition after sep (which holds the AND).
func prefixed(sep string, conds []string) string {
	var s strings.Builder
	for _, c := range conds {
		s.WriteString(sep + c)
	}
	return s.String()
}

// and joins the conditions that are not empty with sep (which holds the AND).
func and(sep string, conds ...string) string {
	return strings.Join(nonEmpty(conds...), sep)
}

// partitionMode is how the partition filter is written.
type partitionMode int

const (
	// ordered: the count and key as parameters, for a read in commit-safe order. It adds "OR (SELECT false)", which
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

// partition: the event's partition_hash mod the count is the key; nothing with a
// count of 0 or 1.
func (b *builder) partition(f Filter, mode partitionMode) string {
	if f.TotalPartitions <= 1 {
		return ""
	}
	if mode == literal {
		return fmt.Sprintf("e.partition_hash %% %d = %d", f.TotalPartitions, f.PartitionKey)
	}
	total, key := b.param(int32(f.TotalPartitions), "integer"), b.param(int32(f.PartitionKey), "integer")
	cond := fmt.Sprintf("e.partition_hash %% %s = %s", total, key)
	if mode == ordered {
		cond += " OR (SELECT false)"
	}
	return "(" + cond + ")"
}

// eventTypes: the event is of one of types; nothing when types is empty.
func (b *builder) eventTypes(types []string) string {
	if len(types) == 0 {
		return ""
	}
	return fmt.Sprintf("e.event_type = ANY (%s)", b.param(types, "text[]"))
}

// handledByRetired: a retired layout of the projection already handled the event: it
// is in that layout's partition, at or before its checkpoint, and not in one of the
// checkpoint's holes after the hole's position (eventstore.Cursor.Handled).
//
// For each partition count the retired layouts have (computed once per statement), the
// event's partition under that count is looked up through esgen_checkpoints_retired
// (projection, partition_count, partition_key): one index probe per count and event,
// however many retired checkpoints there are. (The LIMIT keeps the planner from
// turning the lookup into a join that hashes every retired checkpoint per event.) (Comparing the key with the hash mod each
// checkpoint's own count cannot use the index: every event would visit every retired
// checkpoint, which makes a switch from a large count cost old count × events.)
func (b *builder) handledByRetired(projection string) string {
	p := b.param(projection, "text")
	return fmt.Sprintf(`EXISTS (
      SELECT 1
      FROM unnest(ARRAY(SELECT DISTINCT c.partition_count FROM esgen_checkpoints c WHERE c.projection = %s AND c.retired)) AS rc(n)
      CROSS JOIN LATERAL (
        SELECT 1 FROM esgen_checkpoints r
        WHERE r.projection = %s AND r.retired AND r.partition_count = rc.n AND r.partition_key = (e.partition_hash %% rc.n)::integer
          AND (e.transaction_id, e.global_position) <= (r.last_transaction_id, r.last_position)
          AND NOT coalesce(e.global_position > r.hole_positions[array_position(r.hole_transaction_ids, e.transaction_id)], false)
        LIMIT 1) r)`,
		p, p)
}

// gapSafe renders a read of a cursor's successors (see [ReadFrom]); extra are further
// conditions on the events of both parts.
//
// The parts that return nothing for this read are left out of the text: the rows of
// holes when the cursor has none, the head of the stream when it is not asked for
// (its columns are then NULL), and so are the filters that select everything (a
// count of 1, no event types, no retired layouts). Each would cost the server its
// planning on every custom plan, and would make a generic plan look dearer than the
// custom ones, in which PostgreSQL folds them away. So one read renders a few texts,
// each prepared once per connection.
func (b *builder) gapSafe(name string, f Filter, holes Holes, mode partitionMode, lim string, head bool, extra []string) Statement {
	part := b.partition(f, mode)
	rest := append(nonEmpty(b.eventTypes(f.EventTypes)), extra...)
	cond := append(nonEmpty(part), rest...)
	cols := make([]string, len(Columns))
	for i, c := range Columns {
		cols[i] = "NULL::" + types[i] + " AS " + c
	}
	snapshot := fmt.Sprintf("'%s', pg_snapshot_xmax(s)::text, '%s', ARRAY(SELECT x::text FROM pg_snapshot_xip(s) AS x), '%s', pg_is_in_recovery()",
		SnapshotXmax, SnapshotRunning, SnapshotInRecovery)
	if head {
		snapshot += fmt.Sprintf(", '%s', hd.transaction_id::text, '%s', hd.global_position", SnapshotHeadTransactionID, SnapshotHeadPosition)
	}
	cols[slices.Index(Columns[:], "payload")] = "jsonb_build_object(" + snapshot + ") AS payload"
	var sql strings.Builder
	sql.WriteString("-- name: " + name + "\n")
	sql.WriteString("WITH snap AS MATERIALIZED (SELECT pg_current_snapshot() AS s)\n")
	fmt.Fprintf(&sql, "SELECT %s\nFROM snap\n", strings.Join(cols, ", "))
	if head {
		sql.WriteString(`LEFT JOIN LATERAL (
   SELECT transaction_id, global_position FROM esgen_events
   ORDER BY transaction_id DESC, global_position DESC
   LIMIT 1) hd ON true
`)
	}
	// Both parts run on the commit-order index: a hole's rows are one range of it.
	if len(holes.TransactionIDs) > 0 {
		txs, pos := b.param(xid8s(holes.TransactionIDs), "xid8[]"), b.param(holes.Positions, "bigint[]")
		fmt.Fprintf(&sql, `UNION ALL
(SELECT %s
 FROM unnest(%s, %s) AS h(x, p)
 CROSS JOIN LATERAL (
   SELECT %s
   FROM esgen_events e
   WHERE e.transaction_id = h.x AND (e.transaction_id, e.global_position) > (h.x, h.p)%s
   ORDER BY e.transaction_id, e.global_position
   LIMIT %s) e
 WHERE pg_visible_in_snapshot(h.x, (SELECT s FROM snap))
 ORDER BY e.transaction_id, e.global_position
 LIMIT %s)
`, columnList, txs, pos, columnList, prefixed("\n     AND ", cond), lim, lim)
	}
	where, order := b.rangePart(f, mode, cond, rest)
	fmt.Fprintf(&sql, `UNION ALL
(SELECT %s
 FROM esgen_events e
 WHERE %s
 ORDER BY %s
 LIMIT %s)`, columnList, where, order, lim)
	return Statement{SQL: sql.String(), Args: b.args}
}

// rangePart renders the condition and the order of the rows after the cursor's
// position: the position, then conds (every condition on the events: the partition
// and rest), or, through the partition index (literal), the partition's range of that
// index and rest.
func (b *builder) rangePart(f Filter, mode partitionMode, conds, rest []string) (where, order string) {
	order = "e.transaction_id, e.global_position"
	if mode != literal || f.TotalPartitions <= 1 {
		return b.after(f.AfterTransactionID, f.AfterPosition) + prefixed("\n   AND ", conds), order
	}
	// The range of the partition index: (key, cursor) < (hash % count, commit
	// order) < (key + 1, …), in the index's order. Written so, only that index
	// gives the rows in order, and every plan, custom or generic, reads through
	// it; with "hash % count = key" the commit-order index gives the order too,
	// and the planner, which sees the partition index's entries spread over the
	// table, often prefers it and reads every partition's rows.
	mod := fmt.Sprintf("(e.partition_hash %% %d)", f.TotalPartitions)
	tx := b.param(pgtype.Uint64{Uint64: f.AfterTransactionID, Valid: true}, "xid8")
	pos := b.param(f.AfterPosition, "bigint")
	where = fmt.Sprintf("(%s, e.transaction_id, e.global_position) > (%d, %s, %s)\n   AND %s < %d",
		mod, f.PartitionKey, tx, pos, mod, f.PartitionKey+1)
	return where + prefixed("\n   AND ", rest), mod + ", " + order
}

// ReadBoundary finds where a full [ReadPartition] of r from r's position, with no
// holes, ends: the transaction id and position of its r.Limit-th event, counted
// among the events that every snapshot from now on sees alike (those of
// transactions that ended before every running one began: commit-safe). A read of r
// from there, in any later snapshot, is the read that follows the first one. It
// returns no row when fewer such events follow the position.
//
// It reads the same index range as the read, in the same order, and returns one row,
// none of the events' columns. Without an event type filter or retired layouts, and
// without a partition filter, PostgreSQL reads only the commit-order index where the
// table's pages are all visible (an index-only scan).
func ReadBoundary(r PartitionRead) Statement {
	var b builder
	name, mode := "ReadBoundary", ordered
	if r.Literal && r.TotalPartitions > 1 {
		name, mode = "ReadBoundaryIndexed", literal
	}
	part := b.partition(r.Filter, mode)
	rest := nonEmpty(b.eventTypes(r.EventTypes))
	if r.SkipRetired {
		rest = append(rest, "NOT "+b.handledByRetired(r.Projection))
	}
	where, order := b.rangePart(r.Filter, mode, append(nonEmpty(part), rest...), rest)
	sql := fmt.Sprintf(`-- name: %s
SELECT e.transaction_id, e.global_position
FROM esgen_events e
WHERE %s
   AND %s
ORDER BY %s
OFFSET %d LIMIT 1`, name, where, committed, order, max(r.Limit, 1)-1)
	return Statement{SQL: sql, Args: b.args}
}

func xid8s(v []uint64) []pgtype.Uint64 {
	out := make([]pgtype.Uint64, len(v))
	for i, x := range v {
		out[i] = pgtype.Uint64{Uint64: x, Valid: true}
	}
	return out
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
