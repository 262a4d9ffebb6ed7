package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/internal/pgtest"
)

// The catch-up group starts this test binary again as its worker processes.
func TestMain(m *testing.M) {
	RunWorkerIfRequested()
	os.Exit(pgtest.Main(m))
}

// TestQuick runs every scenario at --quick size and checks that the numbers are sane:
// counts add up, rates are positive and every esgen row has its raw row. It never
// checks a rate or a time.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every benchmark at quick size")
	}
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Config{Quick: true, Progress: &progress})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	checkReport(t, rep)

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + table.String())
	for _, r := range rep.Results {
		if !strings.Contains(table.String(), r.Name) {
			t.Errorf("table lacks %q", r.Name)
		}
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON report does not read back: %v", err)
	}
	if len(back.Results) != len(rep.Results) {
		t.Fatalf("JSON has %d results, report %d", len(back.Results), len(rep.Results))
	}
}

// checkReport checks the rows of a report of the groups given (all when none).
func checkReport(t *testing.T, rep *Report, only ...string) {
	t.Helper()
	if rep.Machine.CPUs < 1 || rep.Machine.Postgres == "" {
		t.Errorf("machine not described: %+v", rep.Machine)
	}
	groups := map[string]int{}
	for _, r := range rep.Results {
		groups[r.Group]++
		if r.Group == GroupFailover {
			// Times, not rates: how often each was measured, the median and the longest.
			if r.Events <= 0 || r.P50Ms <= 0 || r.MaxMs < r.P50Ms || r.EventsPerSec != 0 {
				t.Errorf("%s / %s: %d times, p50 %.1f ms, max %.1f ms, %.0f/s: want times only", r.Group, r.Name, r.Events, r.P50Ms, r.MaxMs, r.EventsPerSec)
			}
			continue
		}
		if r.Events <= 0 || r.Seconds <= 0 || r.EventsPerSec <= 0 {
			t.Errorf("%s / %s: events %d in %.3f s (%.0f/s): want positive", r.Group, r.Name, r.Events, r.Seconds, r.EventsPerSec)
		}
		if r.RawName != "" {
			raw, ok := rep.Result(r.Group, r.RawName)
			if !ok || !(raw.Raw || raw.Baseline) {
				t.Errorf("%s: raw row %q missing", r.Name, r.RawName)
			}
			if r.Ratio <= 0 {
				t.Errorf("%s: no ratio to raw", r.Name)
			}
		}
		if r.Group == GroupCatchUp || r.Group == GroupUpsert {
			// Every event handled was read at least once.
			if r.RowsReturned != r.Events || r.RowsScanned < r.RowsReturned {
				t.Errorf("%s: %d rows scanned, %d returned, %d events", r.Name, r.RowsScanned, r.RowsReturned, r.Events)
			}
			if r.PeakMemBytes == 0 {
				t.Errorf("%s: no peak memory", r.Name)
			}
			// Partitions read through the partition index: the stream once in total.
			if strings.HasPrefix(r.Name, handlerNoop+" handler, 4 ") {
				if q := float64(r.RowsScanned) / float64(r.RowsReturned); q > 1.1 {
					t.Errorf("%s: %.2f rows scanned per row returned, want at most 1.1", r.Name, q)
				}
			}
		}
		if r.P50Ms < 0 || r.P99Ms < r.P50Ms {
			t.Errorf("%s: p50 %.2f ms, p99 %.2f ms", r.Name, r.P50Ms, r.P99Ms)
		}
		if r.Group == GroupLatency || (r.Group == GroupGap && r.P50Ms > 0) {
			if r.P50Ms <= 0 {
				t.Errorf("%s: no latency", r.Name)
			}
		}
	}
	// Every upsert row handled the whole stream, as its raw row did.
	if raw, ok := rep.Result(GroupUpsert, upsertRawName); ok {
		for _, r := range rep.Results {
			if r.Group == GroupUpsert && r.Events != raw.Events {
				t.Errorf("%s: %d events, the raw loop %d", r.Name, r.Events, raw.Events)
			}
		}
	}
	// The gap-safety rows say what they held open, and the holes row carried its holes.
	for _, name := range []string{gapLatencyOther, gapLatencyAppnd, gapLatencyOwn} {
		if r, ok := rep.Result(GroupGap, name); ok && r.HoldSeconds <= 0 {
			t.Errorf("%s: no hold_seconds", name)
		}
	}
	if r, ok := rep.Result(GroupGap, gapCatchUpHoles); ok && r.Holes < gapHoles {
		t.Errorf("%s: %d holes carried, want at least %d", r.Name, r.Holes, gapHoles)
	}
	if r, ok := rep.Result(GroupGap, gapLatencyOwn); ok && r.Events != heldEvents {
		t.Errorf("%s: %d events, want %d", r.Name, r.Events, heldEvents)
	}
	// The catch-up rows a script looks for, each against the raw read of its run.
	if len(only) == 0 || slices.Contains(only, GroupCatchUp) {
		for _, name := range []string{handlerNoop + " handler, " + layoutOne, handlerNoop + " handler, " + layoutInProcess, gapSafeReadsName} {
			if r, ok := rep.Result(GroupCatchUp, name); !ok || r.RawName != rawReadName || r.Ratio <= 0 {
				t.Errorf("catch-up row %q missing or without ratio_to_raw", name)
			}
		}
	}
	want := map[string]int{GroupAppend: 18, GroupCatchUp: 7, GroupUpsert: 5, GroupLatency: 2, GroupGap: 6, GroupFailover: 3}
	for g, n := range want {
		if len(only) > 0 && !slices.Contains(only, g) {
			n = 0
		}
		if groups[g] != n {
			t.Errorf("%d %s rows, want %d", groups[g], g, n)
		}
	}
}

// TestAppendAndUpsert runs the append and upsert groups alone and finds each row a
// script would look for by its name.
func TestAppendAndUpsert(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the append and upsert benchmarks")
	}
	var progress bytes.Buffer
	only := []string{GroupAppend, GroupUpsert}
	rep, err := Run(context.Background(), Config{Quick: true, Only: only, Progress: &progress})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	checkReport(t, rep, only...)
	rows := map[string][]string{
		GroupAppend: {"raw INSERT, 1 row/tx, 8 writers", "Append, 1 event/tx, 8 writers", rawReturningName, rawWithHeadName, rawInTxName, appendInTxName, appendInTxDeferredName},
		GroupUpsert: {upsertRawName, upsertQueuedName, upsertPerEventName, upsertQueuedParts, upsertPerEventParts},
	}
	for g, names := range rows {
		for _, name := range names {
			r, ok := rep.Result(g, name)
			if !ok {
				t.Errorf("no row %s / %q", g, name)
				continue
			}
			if !r.Raw && r.Ratio <= 0 {
				t.Errorf("%s / %s: no ratio_to_raw", g, name)
			}
		}
	}
	for _, name := range []string{"Append, 1 event/tx, 8 writers", rawReturningName, rawWithHeadName} {
		if r, _ := rep.Result(GroupAppend, name); r.RawName != "raw INSERT, 1 row/tx, 8 writers" {
			t.Errorf("%s compared with %q", name, r.RawName)
		}
	}
}

// TestGapSafety runs the gap-safety group alone, with a short hold: the holes row
// carried its holes, the latency rows timed appends made while the transactions
// were open, and the appending transaction's own events were all handled.
func TestGapSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the gap-safety benchmarks")
	}
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Config{Quick: true, Only: []string{GroupGap}, Hold: 500 * time.Millisecond, Progress: &progress})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	checkReport(t, rep, GroupGap)
	for _, name := range []string{rawReadName, gapCatchUpFree, gapCatchUpHoles, gapLatencyOther, gapLatencyAppnd, gapLatencyOwn} {
		if _, ok := rep.Result(GroupGap, name); !ok {
			t.Errorf("no row %q", name)
		}
	}
}

// TestLoadStream checks the fast loader: the rows are what Append would have written
// (hash, versions in commit order) and the table's indexes are back as they were.
func TestLoadStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testPool(t)
	indexes := func() string {
		var s string
		if err := pool.QueryRow(ctx, `SELECT string_agg(indexdef, E'\n' ORDER BY indexdef) FROM pg_indexes WHERE tablename = 'esgen_events'`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := indexes()
	n, err := loadStream(ctx, pool, 2005, false)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2000 {
		t.Fatalf("loaded %d events, want 2000", n)
	}
	if after := indexes(); after != before {
		t.Fatalf("indexes changed by the load:\nbefore\n%s\nafter\n%s", before, after)
	}
	// A commit-safe read waits behind the transactions of other tests on the server
	// (TestSeparateWorkerBinary loads its stream at the same time).
	var evs []eventstore.Event
	pgtest.WaitFor(t, 2*time.Minute, fmt.Sprintf("the %d loaded events to be readable", n), func() bool {
		evs, err = eventstore.ReadAll(ctx, pool, eventstore.ReadOptions{Limit: 5000})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs) >= n
	})
	if len(evs) != n {
		t.Fatalf("read %d events, want %d", len(evs), n)
	}
	next := map[string]int64{}
	for _, e := range evs {
		if e.PartitionHash != eventstore.Hash(e.AggregateID) {
			t.Fatalf("%s: hash %d, want %d", e.AggregateID, e.PartitionHash, eventstore.Hash(e.AggregateID))
		}
		if e.AggregateVersion != next[e.AggregateID]+1 {
			t.Fatalf("%s: version %d after %d in commit order", e.AggregateID, e.AggregateVersion, next[e.AggregateID])
		}
		next[e.AggregateID] = e.AggregateVersion
	}
	if len(next) != n/eventsPerAggregate {
		t.Fatalf("%d aggregates, want %d", len(next), n/eventsPerAggregate)
	}
	for id, v := range next {
		got, err := eventstore.AggregateVersion(ctx, pool, "Account", id)
		if err != nil || got != v {
			t.Fatalf("head of %s: %d (%v), want %d", id, got, err, v)
		}
		break
	}
}

func testPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	pool, err := newPool(context.Background(), pgtest.NewDatabase(tb), 8)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// The go test -bench equivalents: each reports events/s for b.N events.
//
//	go test -run '^$' -bench . ./internal/bench/

func BenchmarkAppend(b *testing.B) {
	for _, perCall := range []int{1, 10, 100, 1000} {
		for _, raw := range []bool{false, true} {
			name := fmt.Sprintf("esgen/events=%d", perCall)
			call := esgenAppend
			if raw {
				name, call = fmt.Sprintf("raw-insert/events=%d", perCall), rawInsert(perCall)
			}
			b.Run(name, func(b *testing.B) {
				pool := testPool(b)
				r := &runner{cfg: Config{}.withDefaults()}
				events := max(b.N, perCall) / perCall * perCall
				b.ResetTimer()
				res, err := r.measureAppend(context.Background(), pool, appendShape{perCall: perCall, writers: 1, events: events}, name, call)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(res.EventsPerSec, "events/s")
			})
		}
	}
}

func BenchmarkCatchUp(b *testing.B) {
	ctx := context.Background()
	for _, name := range []string{"raw-read", "noop/batch=default", "noop/batch=500", "upsert/batch=default"} {
		b.Run(name, func(b *testing.B) {
			url := pgtest.NewDatabase(b)
			pool, err := newPool(ctx, url, 4)
			if err != nil {
				b.Fatal(err)
			}
			defer pool.Close()
			n, err := loadStream(ctx, pool, max(b.N, eventsPerAggregate), false)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := pool.Exec(ctx, readModelDDL); err != nil {
				b.Fatal(err)
			}
			r := &runner{cfg: Config{}.withDefaults()}
			b.ResetTimer()
			var res Result
			spec := catchUpSpec{Database: url, Projection: "bench", Handler: handlerNoop, Partitions: []int{0}, Total: 1, Target: int64(n)}
			switch name {
			case "raw-read":
				res, err = r.rawRead(ctx, pool, url)
			case "noop/batch=500":
				spec.BatchSize = oldBatch
				res, err = r.inProcess(ctx, pool, url, spec)
			case "upsert/batch=default":
				spec.Handler = handlerUpsert
				res, err = r.inProcess(ctx, pool, url, spec)
			default:
				res, err = r.inProcess(ctx, pool, url, spec)
			}
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.EventsPerSec, "events/s")
		})
	}
}

// TestSeparateWorkerBinary runs the 4-process scenario with the worker command of
// internal/bench/worker instead of this binary.
func TestSeparateWorkerBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "worker")
	if out, err := exec.Command("go", "build", "-o", bin, "./worker").CombinedOutput(); err != nil {
		t.Fatalf("go build ./worker: %v\n%s", err, out)
	}
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	pool, err := newPool(ctx, url, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	n, err := loadStream(ctx, pool, 2000, false)
	if err != nil {
		t.Fatal(err)
	}
	counts, err := partitionCounts(ctx, pool, catchUpPartitions)
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{cfg: Config{WorkerBinary: bin}.withDefaults()}
	spec := catchUpSpec{Database: url, Projection: "separate", Handler: handlerNoop, Target: int64(n)}
	res, err := r.processes(ctx, pool, spec, counts, int64(n))
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != int64(n) || res.PeakMemBytes == 0 {
		t.Fatalf("4 worker processes handled %d of %d events (peak RSS %d)", res.Events, n, res.PeakMemBytes)
	}
	var handled int64
	if err := pool.QueryRow(ctx, `SELECT sum(events_handled) FROM esgen_checkpoints WHERE projection = 'separate'`).Scan(&handled); err != nil || handled != int64(n) {
		t.Fatalf("checkpoints count %d handled events (%v), want %d", handled, err, n)
	}
}

// A worker reports its own peak RSS (VmHWM) where /proc has it.
func TestPeakRSS(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc/self/status")
	}
	if got := peakRSS(); got < 1<<20 {
		t.Fatalf("peak RSS %d bytes: VmHWM not read", got)
	}
}
