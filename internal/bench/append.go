package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
)

// Each writer spreads its appends over this many aggregates, so aggregates grow and
// their heads are updated, as in a running system: the 20,000 single-event appends of
// 8 writers give each of their 800 aggregates 25 events.
const aggregatesPerWriter = 100

// payloads are the event bodies the append scenarios cycle through (about 60 bytes).
var payloads = func() [][]byte {
	out := make([][]byte, 64)
	for i := range out {
		out[i] = []byte(`{"amount":` + strconv.Itoa(100+i*37) + `,"currency":"EUR","note":"benchmark event"}`)
	}
	return out
}()

var eventTypes = []string{"MoneyDeposited", "MoneyWithdrawn", "AddressChanged"}

const aggregateType = "Account"

// appendShape is one pair of append scenarios: esgen's Append and the raw insert of the
// same rows.
type appendShape struct {
	perCall int // events per call (per transaction)
	writers int // concurrent writers
	events  int // events in all
	copy    bool
	quiet   bool // esgen.notify = off: no NOTIFY on commit
}

// singleRounds is how many times each single-event scenario runs, the scenarios taking
// turns; the best run of each is its row. Single-event scenarios are short, and a
// burst of load on a shared machine during one of them would decide its ratio.
const singleRounds = 3

// appendScenario is one row of the append group.
type appendScenario struct {
	name, rawName string
	shape         appendShape
	pool          *pgxpool.Pool
	call          appendCall
}

func (r *runner) appendGroup(ctx context.Context) error {
	pool, _, done, err := r.database(ctx, GroupAppend, 16)
	if err != nil {
		return err
	}
	defer done()
	// The same single-event appends with notifications off (esgen.notify=off in the
	// connection's settings): no NOTIFY at all.
	cfg := pool.Config().Copy()
	cfg.ConnConfig.RuntimeParams["esgen.notify"] = "off"
	quietPool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("pool with esgen.notify=off: %w", err)
	}
	defer quietPool.Close()

	n := r.cfg.AppendEvents
	single := max(n/5, 1000)
	var singles []appendScenario
	for _, writers := range []int{1, 8} {
		s := appendShape{perCall: 1, writers: writers, events: single}
		q := s
		q.quiet = true
		singles = append(singles,
			appendScenario{name: rawAppendName(s), shape: s, pool: pool, call: rawInsert(1)},
			appendScenario{name: esgenAppendName(s), rawName: rawAppendName(s), shape: s, pool: pool, call: esgenAppend},
			appendScenario{name: esgenAppendName(q), rawName: rawAppendName(s), shape: q, pool: quietPool, call: esgenAppend})
	}
	// What any append that checks versions costs at least, next to the raw row of 8
	// writers: the position and version sent back, and the aggregate's head written
	// beside the event in the same statement (no lock, no checks, no notification).
	raw8 := appendShape{perCall: 1, writers: 8, events: single}
	singles = append(singles,
		appendScenario{name: rawReturningName, rawName: rawAppendName(raw8), shape: raw8, pool: pool, call: rawInsertReturning},
		appendScenario{name: rawWithHeadName, rawName: rawAppendName(raw8), shape: raw8, pool: pool, call: rawInsertWithHead})
	// In a transaction of the caller's: by default the notification is sent at that
	// transaction's commit, inside it; with DeferNotify and NotifyAppended after it.
	inTx := appendShape{perCall: 1, writers: 8, events: single}
	singles = append(singles,
		appendScenario{name: rawInTxName, shape: inTx, pool: pool, call: rawInsertInTx},
		appendScenario{name: appendInTxName, rawName: rawInTxName, shape: inTx, pool: pool, call: esgenAppendInTx(false)},
		appendScenario{name: appendInTxDeferredName, rawName: rawInTxName, shape: inTx, pool: pool, call: esgenAppendInTx(true)})
	best := make([]Result, len(singles))
	low := make([]float64, len(singles))
	for range singleRounds {
		for i, sc := range singles {
			res, err := r.measureAppend(ctx, sc.pool, sc.shape, sc.name, sc.call)
			if err != nil {
				return fmt.Errorf("%s: %w", sc.name, err)
			}
			if res.EventsPerSec > best[i].EventsPerSec {
				best[i] = res
			}
			if low[i] == 0 || res.EventsPerSec < low[i] {
				low[i] = res.EventsPerSec
			}
		}
	}
	for i, sc := range singles {
		res := best[i]
		res.Raw, res.RawName = sc.rawName == "", sc.rawName
		res.Note = fmt.Sprintf("best of %d runs taking turns with the other single-event rows; the slowest: %.0f events/s", singleRounds, low[i])
		r.add(res)
	}

	for _, perCall := range []int{10, 100, 1000} {
		s := appendShape{perCall: perCall, writers: 1, events: n}
		rawName := rawAppendName(s)
		raw, err := r.measureAppend(ctx, pool, s, rawName, rawInsert(s.perCall))
		if err != nil {
			return fmt.Errorf("%s: %w", rawName, err)
		}
		raw.Raw = true
		r.add(raw)
		name := esgenAppendName(s)
		res, err := r.measureAppend(ctx, pool, s, name, esgenAppend)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		res.RawName = rawName
		r.add(res)
	}
	s := appendShape{perCall: 1000, writers: 1, events: n, copy: true}
	res, err := r.measureAppend(ctx, pool, s, "raw COPY, 1000 rows/call", rawCopy)
	if err != nil {
		return fmt.Errorf("raw COPY: %w", err)
	}
	res.Raw = true
	r.add(res)
	return nil
}

func esgenAppendName(s appendShape) string {
	if s.perCall == 1 {
		name := fmt.Sprintf("Append, 1 event/tx, %d writer%s", s.writers, plural(s.writers))
		if s.quiet {
			name += ", esgen.notify=off"
		}
		return name
	}
	return fmt.Sprintf("Append, %d events/call", s.perCall)
}

func rawAppendName(s appendShape) string {
	if s.perCall == 1 {
		return fmt.Sprintf("raw INSERT, 1 row/tx, %d writer%s", s.writers, plural(s.writers))
	}
	return fmt.Sprintf("raw INSERT, %d rows/statement", s.perCall)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// appendCall writes one call's events (all to one aggregate, versions from+1 ..) and
// returns an error; it is esgen's Append or a raw insert.
type appendCall func(ctx context.Context, pool *pgxpool.Pool, aggID string, from int64, evs []eventstore.EventData) error

func esgenAppend(ctx context.Context, pool *pgxpool.Pool, aggID string, _ int64, evs []eventstore.EventData) error {
	_, err := eventstore.Append(ctx, pool, aggregateType, aggID, eventstore.Any, evs...)
	return err
}

// Names of the rows that show what an append that checks versions costs at least.
const (
	rawReturningName = "raw INSERT … RETURNING position and version, 1 row/tx, 8 writers"
	rawWithHeadName  = "raw head upsert + INSERT in one statement, 1 row/tx, 8 writers"
)

// rawInsertReturning is rawInsert of one row that returns what Append returns: the
// event's position and version.
func rawInsertReturning(ctx context.Context, pool *pgxpool.Pool, aggID string, from int64, evs []eventstore.EventData) error {
	var pos, version int64
	return pool.QueryRow(ctx, insertSQL(1)+` RETURNING global_position, aggregate_version`, insertArgs(aggID, from, evs[:1])...).Scan(&pos, &version)
}

// rawWithHeadSQL writes the aggregate's head (inserted, or its version moved on) and the
// event at the head's version in one statement: the two rows every append that checks
// versions against a head writes, without its lock, checks or notification.
const rawWithHeadSQL = `WITH h AS (
    INSERT INTO esgen_aggregate_heads AS h (aggregate_type, aggregate_id, version, last_transaction_id)
    VALUES ($2, $3, 1, pg_current_xact_id())
    ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET version = h.version + 1, last_transaction_id = excluded.last_transaction_id
    RETURNING h.version
)
INSERT INTO esgen_events (` + insertColumns + `)
SELECT $1, $2, $3, h.version, $4, $5, $6, $7, $8 FROM h
RETURNING global_position, aggregate_version`

// rawInsertWithHead runs rawWithHeadSQL for one event: insertArgs without the version,
// which the head gives.
func rawInsertWithHead(ctx context.Context, pool *pgxpool.Pool, aggID string, from int64, evs []eventstore.EventData) error {
	var pos, version int64
	args := insertArgs(aggID, from, evs[:1])
	args = append(args[:3], args[4:]...)
	return pool.QueryRow(ctx, rawWithHeadSQL, args...).Scan(&pos, &version)
}

// Names of the rows that append in a transaction of the caller's.
const (
	rawInTxName            = "raw INSERT in BEGIN … COMMIT, 1 row/tx, 8 writers"
	appendInTxName         = "Append in the caller's transaction, 1 event/tx, 8 writers"
	appendInTxDeferredName = "Append in the caller's transaction, DeferNotify + NotifyAppended, 8 writers"
)

// esgenAppendInTx appends in a transaction of the caller's (BEGIN, Append, COMMIT);
// with deferNotify the transaction calls DeferNotify first and NotifyAppended after
// its commit.
func esgenAppendInTx(deferNotify bool) appendCall {
	return func(ctx context.Context, pool *pgxpool.Pool, aggID string, _ int64, evs []eventstore.EventData) error {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if deferNotify {
				if err := eventstore.DeferNotify(ctx, tx); err != nil {
					return err
				}
			}
			_, err := eventstore.Append(ctx, tx, aggregateType, aggID, eventstore.Any, evs...)
			return err
		})
		if err != nil || !deferNotify {
			return err
		}
		return eventstore.NotifyAppended(ctx, pool)
	}
}

// rawInsertInTx is rawInsert of one row in an explicit transaction: BEGIN, INSERT,
// COMMIT.
func rawInsertInTx(ctx context.Context, pool *pgxpool.Pool, aggID string, from int64, evs []eventstore.EventData) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, insertSQL(len(evs)), insertArgs(aggID, from, evs)...)
		return err
	})
}

const insertColumns = `event_id, aggregate_type, aggregate_id, aggregate_version, event_type, event_version, partition_hash, payload, metadata`

// rawInsert is a plain multi-row INSERT … VALUES of the same rows: no version check,
// no lock, no aggregate head, no notification.
func rawInsert(rows int) appendCall {
	sql := insertSQL(rows)
	return func(ctx context.Context, pool *pgxpool.Pool, aggID string, from int64, evs []eventstore.EventData) error {
		_, err := pool.Exec(ctx, sql, insertArgs(aggID, from, evs)...)
		return err
	}
}

// insertSQL is the INSERT … VALUES of rows events.
func insertSQL(rows int) string {
	var sb strings.Builder
	sb.WriteString(`INSERT INTO esgen_events (` + insertColumns + `) VALUES `)
	for i := range rows {
		if i > 0 {
			sb.WriteByte(',')
		}
		b := i * 9
		fmt.Fprintf(&sb, "($%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d)", b+1, b+2, b+3, b+4, b+5, b+6, b+7, b+8, b+9)
	}
	return sb.String()
}

// insertArgs are insertSQL's arguments for evs, versions from+1 on.
func insertArgs(aggID string, from int64, evs []eventstore.EventData) []any {
	args := make([]any, 0, 9*len(evs))
	hash := int64(eventstore.Hash(aggID))
	for i, e := range evs {
		args = append(args, pgtype.UUID{Bytes: uuid.New(), Valid: true}, aggregateType, aggID, from+int64(i)+1,
			e.Type, int32(1), hash, e.Payload, []byte(`{}`))
	}
	return args
}

var copyColumns = strings.Split(strings.ReplaceAll(insertColumns, " ", ""), ",")

// rawCopy writes the same rows with COPY FROM STDIN (binary).
func rawCopy(ctx context.Context, pool *pgxpool.Pool, aggID string, from int64, evs []eventstore.EventData) error {
	hash := int64(eventstore.Hash(aggID))
	rows := make([][]any, len(evs))
	for i, e := range evs {
		rows[i] = []any{pgtype.UUID{Bytes: uuid.New(), Valid: true}, aggregateType, aggID, from + int64(i) + 1,
			e.Type, int32(1), hash, e.Payload, []byte(`{}`)}
	}
	_, err := pool.CopyFrom(ctx, pgx.Identifier{"esgen_events"}, copyColumns, pgx.CopyFromRows(rows))
	return err
}

// measureAppend empties the tables, then writes s.events events in calls of s.perCall
// with s.writers concurrent writers and times it.
func (r *runner) measureAppend(ctx context.Context, pool *pgxpool.Pool, s appendShape, name string, call appendCall) (Result, error) {
	if err := resetEvents(ctx, pool); err != nil {
		return Result{}, err
	}
	calls := s.events / s.perCall
	r.resetStatements(ctx, pool)
	cpu0 := cpuTime()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, s.writers)
	start := time.Now()
	for w := range s.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			versions := make([]int64, aggregatesPerWriter)
			ids := make([]string, aggregatesPerWriter)
			for a := range ids {
				ids[a] = "acct-" + strconv.Itoa(w) + "-" + strconv.Itoa(a)
			}
			evs := make([]eventstore.EventData, s.perCall)
			for {
				c := int(next.Add(1)) - 1
				if c >= calls {
					return
				}
				for i := range evs {
					k := c*s.perCall + i
					evs[i] = eventstore.EventData{Type: eventTypes[k%len(eventTypes)], Payload: payloads[k%len(payloads)]}
				}
				a := c % aggregatesPerWriter
				if err := call(ctx, pool, ids[a], versions[a], evs); err != nil {
					errs <- err
					return
				}
				versions[a] += int64(s.perCall)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	close(errs)
	if err := <-errs; err != nil {
		return Result{}, err
	}
	var stored int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM esgen_events`).Scan(&stored); err != nil {
		return Result{}, err
	}
	events := int64(calls * s.perCall)
	if stored != events {
		return Result{}, fmt.Errorf("%d events stored, %d written", stored, events)
	}
	return Result{Group: GroupAppend, Name: name, Events: events, Seconds: elapsed.Seconds(),
		EventsPerSec: float64(events) / elapsed.Seconds(), ClientCPUSeconds: cpu.Seconds(), Server: r.serverTime(ctx, pool)}, nil
}

// resetEvents empties the event tables so each append scenario starts alike.
func resetEvents(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, `TRUNCATE esgen_events, esgen_aggregate_heads RESTART IDENTITY`); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	// A checkpoint now keeps one from landing inside the next measurement. It needs
	// superuser or pg_checkpoint; without them the run goes on.
	_, _ = pool.Exec(ctx, `CHECKPOINT`)
	return nil
}
