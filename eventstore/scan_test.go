package eventstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/readsql"
)

// ScanEvents decodes what was appended, on its fast path (the binary formats pgx asks
// for) and on its fallback (text formats, as over the simple protocol), with the time
// zone pgx's own Scan gives.
func TestScanEventsDecodesBothFormats(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	corr := uuid.NullUUID{UUID: uuid.New(), Valid: true}
	var appended []eventstore.EventData
	for i := range 30 {
		e := eventstore.EventData{ID: uuid.New(), Type: fmt.Sprintf("Type%d", i%3), Version: int32(1 + i%2),
			Payload: json.RawMessage(fmt.Sprintf(`{"n": %d, "s": "%s"}`, i, strings.Repeat("é", i)))}
		if i%2 == 0 {
			e.Metadata = json.RawMessage(`{"who": "test"}`)
			e.CorrelationID = corr
		}
		if i%3 == 0 {
			e.CausationID = uuid.NullUUID{UUID: uuid.New(), Valid: true}
		}
		if _, err := eventstore.Append(ctx, pool, "Agg", fmt.Sprintf("a-%d", i), eventstore.NoStream, e); err != nil {
			t.Fatal(err)
		}
		appended = append(appended, e)
	}
	sql := "SELECT " + strings.Join(readsql.Columns[:], ", ") + " FROM esgen_events ORDER BY global_position"
	scan := func(mode pgx.QueryExecMode) []eventstore.Event {
		rows, err := pool.Query(ctx, sql, mode)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := eventstore.ScanEvents(rows, nil)
		if err != nil {
			t.Fatalf("%v: %v", mode, err)
		}
		return evs
	}
	rows, err := pool.Query(ctx, "SELECT created_at FROM esgen_events ORDER BY global_position")
	if err != nil {
		t.Fatal(err)
	}
	created, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		t.Fatal(err)
	}
	fast, text := scan(pgx.QueryExecModeCacheStatement), scan(pgx.QueryExecModeSimpleProtocol)
	for name, got := range map[string][]eventstore.Event{"binary": fast, "text": text} {
		if len(got) != len(appended) {
			t.Fatalf("%s: %d events, want %d", name, len(got), len(appended))
		}
		for i, e := range appended {
			g := got[i]
			meta := e.Metadata
			if meta == nil {
				meta = json.RawMessage(`{}`)
			}
			if g.EventID != e.ID || g.Type != e.Type || g.Version != e.Version || g.AggregateType != "Agg" ||
				g.AggregateID != fmt.Sprintf("a-%d", i) || g.AggregateVersion != 1 ||
				g.PartitionHash != eventstore.Hash(g.AggregateID) || !jsonEqual(g.Payload, e.Payload) || !jsonEqual(g.Metadata, meta) ||
				g.CorrelationID != e.CorrelationID || g.CausationID != e.CausationID || g.Position.GlobalPosition == 0 || g.Position.TransactionID == 0 {
				t.Errorf("%s, event %d: got %+v, appended %+v", name, i, g, e)
			}
			if !g.CreatedAt.Equal(created[i]) {
				t.Errorf("%s, event %d: created at %v, want %v", name, i, g.CreatedAt, created[i])
			}
		}
	}
	for i := range fast {
		if fast[i].CreatedAt.Location().String() != created[i].Location().String() {
			t.Errorf("event %d: created at %v, pgx scans %v", i, fast[i].CreatedAt, created[i])
		}
		f, x := fast[i], text[i]
		f.CreatedAt, x.CreatedAt = time.Time{}, time.Time{}
		f.Payload, x.Payload = nil, nil // jsonb comes back normalized either way; checked above
		if !reflect.DeepEqual(f, x) {
			t.Errorf("event %d:\nbinary %+v\n  text %+v", i, f, x)
		}
	}
	// Each event's payload is its own: appending to one does not change the next.
	before := string(fast[1].Payload)
	_ = append(fast[0].Payload, "garbage"...)
	if string(fast[1].Payload) != before {
		t.Errorf("appending to one payload changed the next: %s", fast[1].Payload)
	}
}

// Rows that are not esgen_events' columns in order are refused, not decoded into the
// wrong fields.
func TestScanEventsChecksTheColumns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	cols := readsql.Columns
	cols[3], cols[4] = cols[4], cols[3]
	for _, sql := range []string{
		"SELECT " + strings.Join(cols[:], ", ") + " FROM esgen_events",
		"SELECT " + strings.Join(readsql.Columns[:13], ", ") + " FROM esgen_events",
	} {
		rows, err := pool.Query(ctx, sql)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := eventstore.ScanEvents(rows, nil); err == nil || !strings.Contains(err.Error(), "esgen_events") && !strings.Contains(err.Error(), "want aggregate_type") {
			t.Errorf("%s: err = %v", sql, err)
		}
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}
