package eventstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/esgen-dev/esgen/internal/readsql"
)

// ScanEvents reads rows of esgen_events to the end, appends them to dst as events and
// closes rows. The rows must have the table's columns in table order (as every read of
// the store and of the projection runtime selects them):
//
//	global_position, transaction_id, event_id, aggregate_type, aggregate_id,
//	aggregate_version, event_type, event_version, partition_hash, payload, metadata,
//	correlation_id, causation_id, created_at
//
// The rows are decoded straight from the wire when they come in the binary formats
// pgx asks for by default: no intermediate row value, one buffer for the payloads and
// metadata of the call (each event's piece ends with it, so an append to one never
// writes into another), and the few distinct aggregate and event type names shared
// instead of allocated per event. In any other format they are scanned with pgx.
func ScanEvents(rows pgx.Rows, dst []Event) ([]Event, error) {
	defer rows.Close()
	dec := decoder{}
	if n := len(rows.FieldDescriptions()); n != numColumns {
		return dst, columnsErr(rows, fmt.Errorf("eventstore: scan events: %d columns, want the %d of esgen_events", n, numColumns))
	}
	if err := dec.plan(rows.FieldDescriptions(), rows.Conn()); err != nil {
		return dst, columnsErr(rows, err)
	}
	for rows.Next() {
		dst = append(dst, Event{})
		if err := dec.event(rows, &dst[len(dst)-1]); err != nil {
			return dst[:len(dst)-1], err
		}
	}
	return dst, rows.Err()
}

// columnsErr is err, unless the query failed: a query that failed (a lost
// connection, a server shutdown) has no columns and reports its error only when rows
// are closed, and that error, often transient, is the one to return.
func columnsErr(rows pgx.Rows, err error) error {
	rows.Close()
	if rowsErr := rows.Err(); rowsErr != nil {
		return rowsErr
	}
	return err
}

// event decodes the current row's event columns into ev.
func (d *decoder) event(rows pgx.Rows, ev *Event) error {
	if d.fast {
		return d.decode(rows.RawValues(), ev)
	}
	return scanRow(rows, ev)
}

// ScanBatch reads the rows of a gap-safe read of the successors of from (the
// statements readsql.ReadFrom and readsql.ReadPartition render, read with the given
// limit) and closes rows. It returns the batch: the events of holes whose transactions
// have ended, then the events after from's position, and the snapshot they were read
// with, which [Batch.Next] needs to move the cursor.
func ScanBatch(rows pgx.Rows, from Cursor, limit int) (Batch, error) {
	defer rows.Close()
	fds := rows.FieldDescriptions()
	if len(fds) != numColumns {
		return Batch{}, columnsErr(rows, fmt.Errorf("eventstore: scan batch: %d columns, want the %d of esgen_events", len(fds), numColumns))
	}
	dec := decoder{}
	if err := dec.plan(fds, rows.Conn()); err != nil {
		return Batch{}, columnsErr(rows, err)
	}
	var (
		snap    Snapshot
		hasSnap bool
		hs      []Event                    // rows of holes
		rs      = eventSlice{limit: limit} // rows after from's position
	)
	for rows.Next() {
		v := rows.RawValues()
		if v[colGlobalPosition] == nil {
			// The snapshot row (readsql: a gap-safe read's first row).
			if hasSnap {
				return Batch{}, errors.New("eventstore: scan batch: two snapshot rows")
			}
			var err error
			if snap, err = decodeSnapshot(v[colPayload], fds[colPayload]); err != nil {
				return Batch{}, err
			}
			hasSnap = true
			continue
		}
		// Decoded in place: most rows are rows after the position.
		ev := rs.next()
		if err := dec.event(rows, ev); err != nil {
			return Batch{}, err
		}
		switch {
		case from.Position.Less(ev.Position):
		case ev.Position.TransactionID < from.TransactionID && from.hole(ev.Position.TransactionID):
			hs = append(hs, *ev)
			rs.drop()
		default:
			return Batch{}, fmt.Errorf("eventstore: scan batch: event at %s is neither after %s nor of one of its holes", ev.Position, from)
		}
	}
	if err := rows.Err(); err != nil {
		return Batch{}, err
	}
	if !hasSnap {
		return Batch{}, errors.New("eventstore: scan batch: the read returned no snapshot")
	}
	after := rs.ev
	for _, part := range [][]Event{hs, after} {
		if !slices.IsSortedFunc(part, byPosition) {
			slices.SortStableFunc(part, byPosition)
		}
	}
	return NewBatch(from, snap, hs, after, limit), nil
}

// eventSlice collects the events of a read without knowing how many there will be: it
// starts small (an idle partition's read finds a few rows, if any), then makes room for
// a few hundred, then for the read's limit (a few thousand for a partition's read;
// doubling when the limit is larger), so that a read allocates about what its rows take
// and a partition's large read copies its events once, and only a few hundred.
type eventSlice struct {
	ev    []Event
	limit int
}

// next returns the next event, zeroed, to decode into.
func (s *eventSlice) next() *Event {
	if len(s.ev) == cap(s.ev) {
		size := 32
		switch {
		case cap(s.ev) >= s.limit:
			size = 2 * cap(s.ev)
		case cap(s.ev) >= 512 && s.limit <= 8192:
			size = s.limit // a partition's read: its limit is a few thousand
		case cap(s.ev) >= 512:
			size = min(2*cap(s.ev), s.limit)
		case cap(s.ev) >= 32:
			size = min(512, s.limit)
		}
		grown := make([]Event, len(s.ev), max(size, 1))
		copy(grown, s.ev)
		s.ev = grown
	}
	s.ev = s.ev[:len(s.ev)+1]
	return &s.ev[len(s.ev)-1]
}

// drop removes the event next returned last.
func (s *eventSlice) drop() {
	s.ev[len(s.ev)-1] = Event{}
	s.ev = s.ev[:len(s.ev)-1]
}

// snapshotJSON is the snapshot row's payload (readsql's Snapshot… keys).
type snapshotJSON struct {
	Xmax         string   `json:"xmax"`
	Running      []string `json:"running"`
	InRecovery   bool     `json:"in_recovery"`
	HeadTxID     *string  `json:"head_transaction_id"`
	HeadPosition *int64   `json:"head_position"`
}

// decodeSnapshot decodes the snapshot row's payload (jsonb, in either format).
func decodeSnapshot(v []byte, fd pgconn.FieldDescription) (Snapshot, error) {
	if fd.DataTypeOID == pgtype.JSONBOID && fd.Format == pgtype.BinaryFormatCode {
		if len(v) == 0 || v[0] != 1 {
			return Snapshot{}, fmt.Errorf("eventstore: scan batch: snapshot: jsonb: %w", errBadValue)
		}
		v = v[1:]
	}
	var j snapshotJSON
	if err := json.Unmarshal(v, &j); err != nil {
		return Snapshot{}, fmt.Errorf("eventstore: scan batch: snapshot: %w", err)
	}
	if j.InRecovery {
		return Snapshot{}, ErrStandby
	}
	xid := func(s string) (uint64, error) {
		x, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("eventstore: scan batch: snapshot: transaction id %q: %w", s, err)
		}
		return x, nil
	}
	var snap Snapshot
	var err error
	if snap.Xmax, err = xid(j.Xmax); err != nil {
		return Snapshot{}, err
	}
	snap.Running = make([]uint64, len(j.Running))
	for i, s := range j.Running {
		if snap.Running[i], err = xid(s); err != nil {
			return Snapshot{}, err
		}
	}
	slices.Sort(snap.Running)
	if j.HeadTxID != nil && j.HeadPosition != nil {
		tx, err := xid(*j.HeadTxID)
		if err != nil {
			return Snapshot{}, err
		}
		snap.Head = Position{TransactionID: tx, GlobalPosition: *j.HeadPosition}
	}
	return snap, nil
}

func byPosition(a, b Event) int {
	switch {
	case a.Position.Less(b.Position):
		return -1
	case b.Position.Less(a.Position):
		return 1
	}
	return 0
}

// The columns of esgen_events, in order (readsql.Columns).
const (
	colGlobalPosition = iota
	colTransactionID
	colEventID
	colAggregateType
	colAggregateID
	colAggregateVersion
	colEventType
	colEventVersion
	colPartitionHash
	colPayload
	colMetadata
	colCorrelationID
	colCausationID
	colCreatedAt
	numColumns
)

// decoder decodes the rows of one ScanEvents. The fast path reads the values as they
// came over the wire (the binary formats of int8, xid8, int4, uuid and timestamptz;
// text and jsonb in either format); with any other result description it falls back
// to pgx's Scan.
type decoder struct {
	fast     bool
	jsonbBin [2]bool // payload, metadata came in jsonb's binary format (a version byte first)
	loc      *time.Location
	names    names
	buf      []byte // payloads and metadata, handed out in pieces
}

var errBadValue = errors.New("unexpected value")

func (d *decoder) plan(fds []pgconn.FieldDescription, conn *pgx.Conn) error {
	if len(fds) < numColumns {
		return fmt.Errorf("eventstore: scan events: %d columns, want the %d of esgen_events", len(fds), numColumns)
	}
	for i, fd := range fds[:numColumns] {
		if fd.Name != readsql.Columns[i] {
			return fmt.Errorf("eventstore: scan events: column %d is %s, want %s", i+1, fd.Name, readsql.Columns[i])
		}
	}
	binaryOf := map[int]uint32{
		colGlobalPosition: pgtype.Int8OID, colTransactionID: pgtype.XID8OID, colEventID: pgtype.UUIDOID,
		colAggregateVersion: pgtype.Int8OID, colEventVersion: pgtype.Int4OID, colPartitionHash: pgtype.Int8OID,
		colCorrelationID: pgtype.UUIDOID, colCausationID: pgtype.UUIDOID, colCreatedAt: pgtype.TimestamptzOID,
	}
	for i, oid := range binaryOf {
		if fds[i].DataTypeOID != oid || fds[i].Format != pgtype.BinaryFormatCode {
			return nil
		}
	}
	for _, i := range []int{colAggregateType, colAggregateID, colEventType} {
		if fds[i].DataTypeOID != pgtype.TextOID {
			return nil
		}
	}
	for j, i := range []int{colPayload, colMetadata} {
		if fds[i].DataTypeOID != pgtype.JSONBOID {
			return nil
		}
		d.jsonbBin[j] = fds[i].Format == pgtype.BinaryFormatCode
	}
	d.loc = nil
	if conn == nil {
		return nil
	}
	if t, ok := conn.TypeMap().TypeForOID(pgtype.TimestamptzOID); ok {
		c, ok := t.Codec.(*pgtype.TimestamptzCodec)
		if !ok {
			return nil
		}
		d.loc = c.ScanLocation
	}
	d.fast = true
	return nil
}

// decode fills ev from one row's raw values.
func (d *decoder) decode(v [][]byte, ev *Event) error {
	var err error
	col := func(i, size int) []byte {
		if len(v[i]) != size {
			err = fmt.Errorf("eventstore: scan events: column %s: %w (%d bytes)", readsql.Columns[i], errBadValue, len(v[i]))
			return make([]byte, size)
		}
		return v[i]
	}
	ev.Position.GlobalPosition = int64(binary.BigEndian.Uint64(col(colGlobalPosition, 8)))
	ev.Position.TransactionID = binary.BigEndian.Uint64(col(colTransactionID, 8))
	ev.EventID = uuid.UUID(col(colEventID, 16))
	ev.AggregateType = d.names.get(v[colAggregateType])
	ev.AggregateID = string(v[colAggregateID])
	ev.AggregateVersion = int64(binary.BigEndian.Uint64(col(colAggregateVersion, 8)))
	ev.Type = d.names.get(v[colEventType])
	ev.Version = int32(binary.BigEndian.Uint32(col(colEventVersion, 4)))
	ev.PartitionHash = uint32(binary.BigEndian.Uint64(col(colPartitionHash, 8)))
	ev.Payload = d.json(v[colPayload], d.jsonbBin[0], &err)
	ev.Metadata = d.json(v[colMetadata], d.jsonbBin[1], &err)
	for _, c := range []struct {
		i  int
		id *uuid.NullUUID
	}{{colCorrelationID, &ev.CorrelationID}, {colCausationID, &ev.CausationID}} {
		if v[c.i] != nil {
			*c.id = uuid.NullUUID{UUID: uuid.UUID(col(c.i, 16)), Valid: true}
		}
	}
	if v[colCreatedAt] != nil {
		us := int64(binary.BigEndian.Uint64(col(colCreatedAt, 8)))
		if us != 1<<63-1 && us != -1<<63 { // infinity: the zero time, as pgx's Scan gives
			const y2k = 946_684_800 * 1_000_000 // 2000-01-01 in microseconds since 1970
			t := time.Unix(y2k/1_000_000+us/1_000_000, (y2k%1_000_000*1_000)+(us%1_000_000*1_000))
			if d.loc != nil {
				t = t.In(d.loc)
			}
			ev.CreatedAt = t
		}
	}
	return err
}

// json copies a jsonb value into the call's buffer. The piece's capacity ends with it,
// so that an append to one event's payload never overwrites another's.
func (d *decoder) json(v []byte, binaryFormat bool, err *error) []byte {
	if v == nil {
		return nil
	}
	if binaryFormat {
		if len(v) == 0 || v[0] != 1 {
			*err = fmt.Errorf("eventstore: scan events: jsonb: %w", errBadValue)
			return nil
		}
		v = v[1:]
	}
	if len(d.buf)+len(v) > cap(d.buf) {
		d.buf = make([]byte, 0, max(64<<10, len(v)))
	}
	off := len(d.buf)
	d.buf = append(d.buf, v...)
	return d.buf[off:len(d.buf):len(d.buf)]
}

// scanRow is the slow path: pgx's Scan. Columns after the event's are skipped.
func scanRow(rows pgx.Rows, ev *Event) error {
	var (
		txID           pgtype.Uint64
		id, corr, caus pgtype.UUID
		hash           int64
		payload, meta  []byte
		created        pgtype.Timestamptz
	)
	dst := []any{&ev.Position.GlobalPosition, &txID, &id, &ev.AggregateType, &ev.AggregateID,
		&ev.AggregateVersion, &ev.Type, &ev.Version, &hash, &payload, &meta, &corr, &caus, &created}
	dst = append(dst, make([]any, len(rows.FieldDescriptions())-len(dst))...) // nil: skipped
	if err := rows.Scan(dst...); err != nil {
		return err
	}
	ev.Position.TransactionID = txID.Uint64
	ev.EventID = id.Bytes
	ev.PartitionHash = uint32(hash)
	ev.Payload, ev.Metadata = payload, meta
	ev.CorrelationID = uuid.NullUUID{UUID: corr.Bytes, Valid: corr.Valid}
	ev.CausationID = uuid.NullUUID{UUID: caus.Bytes, Valid: caus.Valid}
	ev.CreatedAt = created.Time
	return nil
}

// names shares the strings of the aggregate and event type names of one call: a read
// sees few distinct ones.
type names struct{ m map[string]string }

func (n *names) get(b []byte) string {
	if s, ok := n.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if n.m == nil || len(n.m) >= 1024 {
		n.m = make(map[string]string)
	}
	n.m[s] = s
	return s
}
