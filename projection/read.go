package projection

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/generated/dbsqlc"
)

// read reads up to limit events of the partition after from (step 1 of a batch).
//
// The statement and its arguments are the generated ReadPartition's (or, with a
// partition index, readIndexedSQL), but the rows are decoded here, straight from the
// wire into one slice of events per batch: no intermediate row struct, one buffer for
// the payloads and metadata of a batch, and the few distinct aggregate and event type
// names shared instead of allocated per event.
func (w *worker) read(ctx context.Context, tx pgx.Tx, from eventstore.Position, limit int, skipRetired bool) ([]eventstore.Event, error) {
	types := w.p.EventTypes
	if types == nil {
		types = []string{}
	}
	params := dbsqlc.ReadPartitionParams{
		AfterTransactionID: xid8(from.TransactionID), AfterPosition: from.GlobalPosition,
		TotalPartitions: int32(w.total), PartitionKey: int32(w.key), EventTypes: types,
		SkipRetired: skipRetired, Projection: w.p.Name, BatchLimit: int32(limit),
	}
	var sql string
	var args []any
	if w.indexed {
		sql = fmt.Sprintf(readIndexedSQL, w.total, w.key)
		args = []any{params.AfterTransactionID, params.AfterPosition, params.EventTypes, params.SkipRetired, params.Projection, params.BatchLimit}
	} else {
		var c capture
		_, _ = queries.ReadPartition(ctx, &c, params)
		sql, args = c.sql, c.args
	}
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	dec := decoder{names: &w.names}
	if err := dec.plan(rows.FieldDescriptions(), rows.Conn().TypeMap()); err != nil {
		// A query that failed (a lost connection, a server shutdown) has no columns and
		// reports its error only now: that error, often transient, is the one to return.
		rows.Close()
		if rowsErr := rows.Err(); rowsErr != nil {
			return nil, rowsErr
		}
		return nil, err
	}
	events := make([]eventstore.Event, 0, limit)
	for rows.Next() {
		events = append(events, eventstore.Event{})
		ev := &events[len(events)-1]
		if dec.fast {
			err = dec.decode(rows.RawValues(), ev)
		} else {
			err = scanRow(rows, ev)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return events, nil
}

// capture is a dbsqlc.DBTX that records the statement and arguments of a generated
// query instead of running it.
type capture struct {
	sql  string
	args []any
}

var errCaptured = errors.New("captured")

func (c *capture) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.sql, c.args = sql, args
	return pgconn.CommandTag{}, errCaptured
}

func (c *capture) Query(_ context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.sql, c.args = sql, args
	return nil, errCaptured
}

func (c *capture) QueryRow(context.Context, string, ...any) pgx.Row {
	panic("projection: capture.QueryRow is not used")
}

// The columns of ReadPartition, in order.
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

// decoder decodes the rows of one read. The fast path reads the values as they came
// over the wire (the binary formats of int8, xid8, int4, uuid and timestamptz; text
// and jsonb in either format); with any other result description it falls back to
// pgx's Scan.
type decoder struct {
	fast     bool
	jsonbBin [2]bool // payload, metadata came in jsonb's binary format (a version byte first)
	loc      *time.Location
	names    *names
	buf      []byte // payloads and metadata of the batch, handed out in pieces
}

func (d *decoder) plan(fds []pgconn.FieldDescription, m *pgtype.Map) error {
	if len(fds) != numColumns {
		return fmt.Errorf("read partition: %d columns, want %d", len(fds), numColumns)
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
	if t, ok := m.TypeForOID(pgtype.TimestamptzOID); ok {
		c, ok := t.Codec.(*pgtype.TimestamptzCodec)
		if !ok {
			return nil
		}
		d.loc = c.ScanLocation
	}
	d.fast = true
	return nil
}

var errBadValue = errors.New("unexpected value")

// decode fills ev from one row's raw values.
func (d *decoder) decode(v [][]byte, ev *eventstore.Event) error {
	var err error
	col := func(i, size int) []byte {
		if len(v[i]) != size {
			err = fmt.Errorf("read partition: column %d: %w (%d bytes)", i, errBadValue, len(v[i]))
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
		if us != 1<<63-1 && us != -1<<63 { // infinity: the zero time, as before
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

// json copies a jsonb value into the batch's buffer. The piece's capacity ends with
// it, so that an append to one event's payload never overwrites another's.
func (d *decoder) json(v []byte, binaryFormat bool, err *error) []byte {
	if v == nil {
		return nil
	}
	if binaryFormat {
		if len(v) == 0 || v[0] != 1 {
			*err = fmt.Errorf("read partition: jsonb: %w", errBadValue)
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

// scanRow is the slow path: pgx's Scan into the generated row type.
func scanRow(rows pgx.Rows, ev *eventstore.Event) error {
	var r dbsqlc.EsgenEvent
	if err := rows.Scan(&r.GlobalPosition, &r.TransactionID, &r.EventID, &r.AggregateType, &r.AggregateID,
		&r.AggregateVersion, &r.EventType, &r.EventVersion, &r.PartitionHash, &r.Payload, &r.Metadata,
		&r.CorrelationID, &r.CausationID, &r.CreatedAt); err != nil {
		return err
	}
	*ev = eventstore.FromRow(r)
	return nil
}

// names shares the strings of the aggregate and event type names a worker reads: a
// projection sees few distinct ones.
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
