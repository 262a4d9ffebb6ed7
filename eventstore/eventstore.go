package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/esgen-dev/esgen/generated/dbsqlc"
	"github.com/esgen-dev/esgen/internal/readsql"
)

// DBTX is what the store needs of a connection: pgx.Tx, *pgx.Conn and *pgxpool.Pool
// all have it. Pass a transaction to make an append part of a larger unit of work.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var queries = dbsqlc.New()

// ExpectedVersion is the condition an append puts on the aggregate's current version.
type ExpectedVersion int64

const (
	// Any appends whatever the aggregate's version is.
	Any ExpectedVersion = -1
	// NoStream appends only when the aggregate has no events yet.
	NoStream ExpectedVersion = 0
)

// Exact appends only when the aggregate is at version v (v = 0 is [NoStream]).
func Exact(v int64) ExpectedVersion { return ExpectedVersion(v) }

func (e ExpectedVersion) String() string {
	switch {
	case e == Any:
		return "any"
	case e == NoStream:
		return "no stream"
	default:
		return strconv.FormatInt(int64(e), 10)
	}
}

// EventData is one event to append.
type EventData struct {
	ID       uuid.UUID       // zero: a random (v4) id is generated
	Type     string          // the event type, e.g. "AccountOpened"
	Version  int32           // the event schema version; 0 means 1
	Payload  json.RawMessage // must be valid JSON
	Metadata json.RawMessage // nil means {}; must be valid JSON otherwise

	CorrelationID uuid.NullUUID
	CausationID   uuid.NullUUID
}

// AppendResult reports where the appended events landed.
type AppendResult struct {
	Version   int64   // the aggregate's version after the append
	Positions []int64 // the global position of each event, in the order given
}

// Position is a place in the commit-safe order of the stream.
type Position struct {
	TransactionID  uint64 `json:"transaction_id"`
	GlobalPosition int64  `json:"global_position"`
}

// Less reports whether p comes before q in commit-safe order.
func (p Position) Less(q Position) bool {
	if p.TransactionID != q.TransactionID {
		return p.TransactionID < q.TransactionID
	}
	return p.GlobalPosition < q.GlobalPosition
}

func (p Position) String() string {
	return fmt.Sprintf("%d/%d", p.TransactionID, p.GlobalPosition)
}

// Event is a stored event with its envelope.
type Event struct {
	Position         Position
	EventID          uuid.UUID
	AggregateType    string
	AggregateID      string
	AggregateVersion int64
	Type             string
	Version          int32
	Payload          json.RawMessage
	Metadata         json.RawMessage
	CorrelationID    uuid.NullUUID
	CausationID      uuid.NullUUID
	PartitionHash    uint32
	CreatedAt        time.Time
}

// ErrConcurrency is matched (errors.Is) by every [*ConcurrencyError].
var ErrConcurrency = errors.New("eventstore: concurrency conflict")

// ErrInvalid is matched (errors.Is) by every error about a malformed append request.
var ErrInvalid = errors.New("eventstore: invalid append")

// ConcurrencyError says that an aggregate was not at the expected version.
type ConcurrencyError struct {
	AggregateType string
	AggregateID   string
	Expected      ExpectedVersion
	Actual        int64
}

func (e *ConcurrencyError) Error() string {
	return fmt.Sprintf("eventstore: concurrency conflict on %s %q: expected version %s, actual %d",
		e.AggregateType, e.AggregateID, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrConcurrency) true.
func (e *ConcurrencyError) Is(target error) bool { return target == ErrConcurrency }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

var emptyObject = json.RawMessage(`{}`)

// Append appends events to one aggregate, in one statement, if its version matches
// expected. On a version mismatch it returns a [*ConcurrencyError] and writes nothing.
// Run it in the caller's transaction to commit the events with other writes.
//
// Given a pool, or a connection that is not inside a transaction, Append runs in a
// transaction of its own and notifies listening projections after that transaction
// committed. On a pool, concurrent single-event appends share their notifications (one
// sent after several commits covers them all), so Append may return before the
// notification covering its event is sent, by another append or in the background,
// within about a round trip and a millisecond (see the package documentation). In a transaction of the caller's (a
// pgx.Tx) the notification is part of the transaction and sent at its commit, which
// holds NOTIFY's server-wide lock through that commit; [DeferNotify] and
// [NotifyAppended] move it after the commit.
//
// A transaction that already wrote elsewhere may get a serialization failure (SQLSTATE
// 40001) when a younger transaction appended to the same aggregate first; retry it. See
// the package documentation.
func Append(ctx context.Context, db DBTX, aggregateType, aggregateID string, expected ExpectedVersion, events ...EventData) (AppendResult, error) {
	if aggregateType == "" {
		return AppendResult{}, invalid("aggregate type is empty")
	}
	if aggregateID == "" {
		return AppendResult{}, invalid("aggregate id is empty (aggregate type %s)", aggregateType)
	}
	if expected < Any {
		return AppendResult{}, invalid("expected version %d for %s %q: use Any (-1), NoStream (0) or Exact(n) with n > 0", int64(expected), aggregateType, aggregateID)
	}
	if len(events) == 0 {
		return AppendResult{}, invalid("no events to append to %s %q", aggregateType, aggregateID)
	}
	n := len(events)
	hash := int64(Hash(aggregateID))
	if n == 1 {
		ev, err := checkEvent(0, events[0], aggregateType, aggregateID)
		if err != nil {
			return AppendResult{}, err
		}
		return appendOne(ctx, db, dbsqlc.AppendEventParams{
			AggregateType:   aggregateType,
			AggregateID:     aggregateID,
			ExpectedVersion: int64(expected),
			PartitionHash:   hash,
			EventID:         ev.id,
			EventType:       ev.typ,
			EventVersion:    ev.version,
			Payload:         ev.payload,
			Metadata:        ev.metadata,
			CorrelationID:   ev.correlation,
			CausationID:     ev.causation,
		}, expected)
	}
	p := dbsqlc.AppendEventsParams{
		AggregateType:   aggregateType,
		AggregateID:     aggregateID,
		ExpectedVersion: int64(expected),
		PartitionHash:   hash,
		EventIds:        make([]pgtype.UUID, n),
		EventTypes:      make([]string, n),
		EventVersions:   make([]int32, n),
		Payloads:        make([][]byte, n),
		Metadata:        make([][]byte, n),
		CorrelationIds:  make([]pgtype.UUID, n),
		CausationIds:    make([]pgtype.UUID, n),
	}
	for i, e := range events {
		ev, err := checkEvent(i, e, aggregateType, aggregateID)
		if err != nil {
			return AppendResult{}, err
		}
		p.EventIds[i] = ev.id
		p.EventTypes[i] = ev.typ
		p.EventVersions[i] = ev.version
		p.Payloads[i] = ev.payload
		p.Metadata[i] = ev.metadata
		p.CorrelationIds[i] = ev.correlation
		p.CausationIds[i] = ev.causation
	}
	var rows []dbsqlc.AppendEventsRow
	conn, release, own, err := ownConn(ctx, db)
	switch {
	case err != nil:
	case own:
		rows, err = appendOwn(ctx, conn, p)
		release()
	default:
		rows, err = queries.AppendEvents(ctx, db, p)
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "ESG01" {
			actual, _ := strconv.ParseInt(pgErr.Detail, 10, 64)
			return AppendResult{}, &ConcurrencyError{AggregateType: aggregateType, AggregateID: aggregateID, Expected: expected, Actual: actual}
		}
		return AppendResult{}, fmt.Errorf("eventstore: append %d event(s) to %s %q: %w", n, aggregateType, aggregateID, MissingTables(err))
	}
	if len(rows) != n {
		return AppendResult{}, fmt.Errorf("eventstore: append to %s %q: %d events stored, %d sent", aggregateType, aggregateID, len(rows), n)
	}
	res := AppendResult{Positions: make([]int64, n)}
	for _, r := range rows {
		// Versions are consecutive and end at the new version.
		res.Version = max(res.Version, r.AggregateVersion)
	}
	first := res.Version - int64(n) + 1
	for _, r := range rows {
		res.Positions[r.AggregateVersion-first] = r.GlobalPosition
	}
	return res, nil
}

// appendError turns a failed append's error into the error Append returns: a
// [*ConcurrencyError] for a version mismatch (SQLSTATE ESG01, the actual version as
// DETAIL), the error with context otherwise.
func appendError(err error, n int, aggregateType, aggregateID string, expected ExpectedVersion) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "ESG01" {
		actual, _ := strconv.ParseInt(pgErr.Detail, 10, 64)
		return &ConcurrencyError{AggregateType: aggregateType, AggregateID: aggregateID, Expected: expected, Actual: actual}
	}
	return fmt.Errorf("eventstore: append %d event(s) to %s %q: %w", n, aggregateType, aggregateID, MissingTables(err))
}

// checkedEvent is an event to append, checked and with its defaults filled in.
type checkedEvent struct {
	id                     pgtype.UUID
	typ                    string
	version                int32
	payload, metadata      []byte
	correlation, causation pgtype.UUID
}

// checkEvent checks event i of an append and fills in its defaults: a random id, event
// version 1, metadata {}.
func checkEvent(i int, e EventData, aggregateType, aggregateID string) (checkedEvent, error) {
	if e.Type == "" {
		return checkedEvent{}, invalid("event %d of %s %q has no type", i, aggregateType, aggregateID)
	}
	if !json.Valid(e.Payload) {
		return checkedEvent{}, invalid("event %d (%s) of %s %q: payload is not valid JSON", i, e.Type, aggregateType, aggregateID)
	}
	meta := e.Metadata
	if meta == nil {
		meta = emptyObject
	} else if !json.Valid(meta) {
		return checkedEvent{}, invalid("event %d (%s) of %s %q: metadata is not valid JSON", i, e.Type, aggregateType, aggregateID)
	}
	if e.Version < 0 {
		return checkedEvent{}, invalid("event %d (%s) of %s %q: negative event version %d", i, e.Type, aggregateType, aggregateID, e.Version)
	}
	id := e.ID
	if id == uuid.Nil {
		id = uuid.New()
	}
	ver := e.Version
	if ver == 0 {
		ver = 1
	}
	return checkedEvent{
		id: pgtype.UUID{Bytes: id, Valid: true}, typ: e.Type, version: ver, payload: e.Payload, metadata: meta,
		correlation: pgtype.UUID{Bytes: e.CorrelationID.UUID, Valid: e.CorrelationID.Valid},
		causation:   pgtype.UUID{Bytes: e.CausationID.UUID, Valid: e.CausationID.Valid},
	}, nil
}

// ReadOptions selects a part of the global stream.
type ReadOptions struct {
	After Position // read events after this position (zero: from the start)
	// Holes, with After, make a [Cursor] (ReadAll only): the events of these
	// transactions after each hole's position are read too. Pass a checkpoint's holes
	// with its position, or events in them are missed.
	Holes           []Hole
	Limit           int      // at most this many events (0: 1000)
	PartitionKey    int      // with TotalPartitions > 1: only this partition
	TotalPartitions int      // 0 or 1: no partitioning
	EventTypes      []string // only these types (empty: all)
}

// DefaultReadLimit is the batch size of [ReadAll] when ReadOptions.Limit is 0.
const DefaultReadLimit = 1000

// ReadAll reads the global stream after opts.After (and in opts.Holes) in commit-safe
// order: it returns only events whose transactions are older than every transaction
// still running on the server, so no event can later appear before the last one
// returned, and the last one's position is a cursor without holes. The price: one
// transaction left open anywhere on the server stops it there until it ends. A reader
// that must not wait uses [ReadFrom].
func ReadAll(ctx context.Context, db DBTX, opts ReadOptions) ([]Event, error) {
	if opts.TotalPartitions > 1 {
		if err := CheckPartition(opts.PartitionKey, opts.TotalPartitions); err != nil {
			return nil, fmt.Errorf("eventstore: read: %w", err)
		}
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = DefaultReadLimit
	}
	st := readsql.ReadAll(readsql.Filter{
		AfterTransactionID: opts.After.TransactionID, AfterPosition: opts.After.GlobalPosition,
		TotalPartitions: opts.TotalPartitions, PartitionKey: opts.PartitionKey, EventTypes: opts.EventTypes,
	}, holesOf(opts.Holes), limit)
	out, err := query(ctx, db, st)
	if err != nil {
		return nil, fmt.Errorf("eventstore: read after %s: %w", opts.After, err)
	}
	return out, nil
}

func holesOf(hs []Hole) readsql.Holes {
	txs, positions := Cursor{Holes: hs}.HoleArrays()
	return readsql.Holes{TransactionIDs: txs, Positions: positions}
}

// ErrStandby is returned by a gap-safe read on a standby server (one in recovery):
// there PostgreSQL does not report the running transactions in a snapshot, so a reader
// that reads past them would skip their events for good. Read from the primary.
var ErrStandby = errors.New("eventstore: the server is a standby (in recovery): gap-safe readers must run on the primary, where running transactions are known")

// ReadFrom reads the events after cursor from, gap-safely and without waiting for
// running transactions: in one statement and one snapshot, the events of from's holes
// whose transactions have ended, then the events after from's position that are
// committed, up to opts.Limit in all, filtered by opts' partition and event types
// (opts.After is not used). Events of transactions still running are left for a later
// read: the returned batch's Next method gives the cursor once its first n events are
// handled, with every transaction it passed while running kept as a hole. Start from
// the zero Cursor.
//
// Events come in commit order per aggregate (version order); across aggregates an event
// of a transaction that committed late comes after younger transactions' events.
// ReadFrom refuses to run on a standby ([ErrStandby]).
func ReadFrom(ctx context.Context, db DBTX, from Cursor, opts ReadOptions) (Batch, error) {
	if opts.TotalPartitions > 1 {
		if err := CheckPartition(opts.PartitionKey, opts.TotalPartitions); err != nil {
			return Batch{}, fmt.Errorf("eventstore: read: %w", err)
		}
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = DefaultReadLimit
	}
	st := readsql.ReadFrom(readsql.Filter{
		AfterTransactionID: from.TransactionID, AfterPosition: from.GlobalPosition,
		TotalPartitions: opts.TotalPartitions, PartitionKey: opts.PartitionKey, EventTypes: opts.EventTypes,
	}, holesOf(from.Holes), limit)
	rows, err := db.Query(ctx, st.SQL, st.Args...)
	if err != nil {
		return Batch{}, fmt.Errorf("eventstore: read after %s: %w", from, err)
	}
	b, err := ScanBatch(rows, from, limit)
	if err != nil {
		return Batch{}, fmt.Errorf("eventstore: read after %s: %w", from, err)
	}
	return b, nil
}

// ReadAggregate reads one aggregate's events with versions from..to (inclusive; to <= 0
// means to the end), in version order.
func ReadAggregate(ctx context.Context, db DBTX, aggregateType, aggregateID string, from, to int64) ([]Event, error) {
	if to <= 0 {
		to = 1<<63 - 1
	}
	out, err := query(ctx, db, readsql.ReadAggregate(aggregateType, aggregateID, from, to))
	if err != nil {
		return nil, fmt.Errorf("eventstore: read %s %q: %w", aggregateType, aggregateID, err)
	}
	return out, nil
}

// query runs a read of events (never nil without an error).
func query(ctx context.Context, db DBTX, st readsql.Statement) ([]Event, error) {
	rows, err := db.Query(ctx, st.SQL, st.Args...)
	if err != nil {
		return nil, err
	}
	out, err := ScanEvents(rows, []Event{})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AggregateVersion returns an aggregate's current version, 0 when it has no events.
func AggregateVersion(ctx context.Context, db DBTX, aggregateType, aggregateID string) (int64, error) {
	v, err := queries.AggregateVersion(ctx, db, dbsqlc.AggregateVersionParams{AggregateType: aggregateType, AggregateID: aggregateID})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("eventstore: version of %s %q: %w", aggregateType, aggregateID, MissingTables(err))
	}
	return v, nil
}
