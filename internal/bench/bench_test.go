package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/esgen-dev/esgen/internal/bench"
)

func TestMain(m *testing.M) {
	bench.RunWorkerIfRequested()
	os.Exit(m.Run())
}

// TestQuick runs every scenario at --quick size and checks that the numbers are sane:
// counts add up, rates are positive and every esgen row has its raw row. It never
// checks a rate or a time.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PostgreSQL for about half a minute")
	}
	var progress bytes.Buffer
	rep, err := bench.Run(context.Background(), bench.Config{Quick: true, Progress: &progress})
	if err != nil {
		t.Fatal(err)
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
	var back bench.Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON report does not read back: %v", err)
	}
	if len(back.Results) != len(rep.Results) {
		t.Fatalf("JSON has %d results, report %d", len(back.Results), len(rep.Results))
	}
}

func checkReport(t *testing.T, rep *bench.Report) {
	t.Helper()
	if rep.Machine.CPUs < 1 || rep.Machine.Postgres == "" {
		t.Errorf("machine not described: %+v", rep.Machine)
	}
	groups := map[string]int{}
	for _, r := range rep.Results {
		groups[r.Group]++
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
		if r.RowsScanned < 0 || (r.RowsReturned > 0 && r.RowsReturned > r.Events) {
			t.Errorf("%s: rows scanned %d, returned %d of %d events", r.Name, r.RowsScanned, r.RowsReturned, r.Events)
		}
		if r.P50Ms < 0 || r.P99Ms < r.P50Ms {
			t.Errorf("%s: p50 %.2f ms, p99 %.2f ms", r.Name, r.P50Ms, r.P99Ms)
		}
	}
	if groups[bench.GroupAppend] != 11 {
		t.Errorf("%d append rows, want 11", groups[bench.GroupAppend])
	}
}
