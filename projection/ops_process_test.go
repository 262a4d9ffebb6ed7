package projection_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projection"
)

// Operating the projectors as real processes: a mistyped or stale partition count is
// refused without touching the fleet, /metrics and the health checks say what the
// partitions do, a stopped partition fails /healthz until its event is skipped with
// esgen skip, failures are logged so that an operator can act, logs stay calm.

var (
	esgenOnce sync.Once
	esgenBin  string
	esgenErr  error
)

// esgenCLI builds cmd/esgen once per test run (next to the test worker).
func esgenCLI(t testing.TB) string {
	t.Helper()
	workerBinary(t) // makes workerDir
	esgenOnce.Do(func() {
		esgenBin = filepath.Join(workerDir, "esgen")
		out, err := exec.Command("go", "build", "-o", esgenBin, "../cmd/esgen").CombinedOutput()
		if err != nil {
			esgenErr = fmt.Errorf("build esgen: %v\n%s", err, out)
		}
	})
	if esgenErr != nil {
		t.Fatal(esgenErr)
	}
	return esgenBin
}

// esgen runs the esgen CLI against url and returns its stdout, stderr and exit code.
func esgen(t testing.TB, url string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(esgenCLI(t), args...)
	cmd.Env = append(cmd.Environ(), "DATABASE_URL="+url)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// layoutRows is the projection's layout and checkpoints as one comparable string.
func layoutRows(t testing.TB, url string) string {
	t.Helper()
	pool := newPool(t, url)
	rows, err := pool.Query(context.Background(), `
		SELECT 'projection ' || name || ' count ' || partition_count || ' generation ' || generation || ' used ' || counts_used::text FROM esgen_projections
		UNION ALL
		SELECT 'checkpoint ' || projection || ' ' || generation || '/' || partition_key || '/' || partition_count || ' retired ' || retired FROM esgen_checkpoints
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	return strings.Join(out, "\n")
}

// A worker started with TOTAL_PARTITIONS=100000 (a typo for 100) is refused before it
// connects: exit 2, nothing written. A running fleet of two is unaffected by workers
// with a wrong count (a new one, a stale one, the typo with RESCALE): each exits 2,
// naming the live count and how to change it, and the layout does not move.
func TestWrongCountRefusedFleetUnaffected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newReadModelDB(t)

	typo := startWorker(t, "typo", url, "TOTAL_PARTITIONS=100000", "PARTITION_KEY=0")
	if code := typo.wait(t, time.Minute); code != 2 ||
		!strings.Contains(typo.Output(), "TOTAL_PARTITIONS=100000 is more than the 1024 partitions a projection may have") {
		t.Fatalf("typo: exit %d:\n%s", code, typo.Output())
	}
	if n := count(t, pool, "SELECT (SELECT count(*) FROM esgen_projections) + (SELECT count(*) FROM esgen_checkpoints)"); n != 0 {
		t.Fatalf("the refused typo wrote %d rows", n)
	}

	w0 := startWorker(t, "2/w0", url, "TOTAL_PARTITIONS=2", "PARTITION_KEY=0", "BATCH_SIZE=50")
	w1 := startWorker(t, "2/w1", url, "TOTAL_PARTITIONS=2", "PARTITION_KEY=1", "BATCH_SIZE=50")
	wctx, stopWriters := context.WithCancel(ctx)
	defer stopWriters()
	var w writers
	writersDone := make(chan struct{})
	go func() {
		defer close(writersDone)
		w.run(wctx, t, pool, 2, 3000, 300, 5*time.Millisecond)
	}()
	waitFor(t, time.Minute, "the fleet handling events", func() bool { return count(t, pool, "SELECT count(*) FROM rm_events") >= 300 })
	before := layoutRows(t, url)

	for _, c := range []struct {
		name string
		env  []string
		want string
	}{
		{"new count", []string{"TOTAL_PARTITIONS=3", "PARTITION_KEY=0"},
			"TOTAL_PARTITIONS=3 does not match the live layout: the projection runs with 2 partitions (generation 1; counts used: 2); start this worker with TOTAL_PARTITIONS=2, or change the count on purpose with esgen rescale rm 3 (or --rescale on one worker)"},
		{"stale count", []string{"TOTAL_PARTITIONS=1"}, "TOTAL_PARTITIONS=1 does not match the live layout: the projection runs with 2 partitions"},
		{"typo with RESCALE", []string{"TOTAL_PARTITIONS=100000", "PARTITION_KEY=0", "RESCALE=1"}, "TOTAL_PARTITIONS=100000 is more than the 1024 partitions"},
	} {
		p := startWorker(t, c.name, url, c.env...)
		if code := p.wait(t, time.Minute); code != 2 || !strings.Contains(p.Output(), c.want) {
			t.Fatalf("%s: exit %d, want 2 with %q:\n%s", c.name, code, c.want, p.Output())
		}
		if err := allAlive(w0, w1)(); err != nil {
			t.Fatalf("after the %s worker: %v", c.name, err)
		}
	}
	if after := layoutRows(t, url); after != before {
		t.Fatalf("the refused workers changed the layout:\n%s\nto\n%s", before, after)
	}
	<-writersDone
	waitApplied(t, pool, 2*time.Minute, allAlive(w0, w1))
	for _, p := range []*proc{w0, w1} {
		if code := p.stop(t); code != 0 {
			t.Errorf("%s exited with %d", p.name, code)
		}
	}
	n := checkReadModel(t, pool)
	if after := layoutRows(t, url); after != before {
		t.Fatalf("layout changed:\n%s\nto\n%s", before, after)
	}
	t.Logf("%d events applied exactly once by the fleet of 2; the typo, a new and a stale count were refused (exit 2)", n)
}

// metricsAddr waits for the worker's log line with the address of its metrics server.
func metricsAddr(t *testing.T, p *proc) string {
	t.Helper()
	var addr string
	waitFor(t, time.Minute, p.name+" to serve metrics", func() bool {
		if recs := p.logLines("serving metrics and health checks"); len(recs) > 0 {
			addr, _ = recs[0]["addr"].(string)
		}
		return addr != "" || p.exited()
	})
	if addr == "" {
		t.Fatalf("%s serves no metrics:\n%s", p.name, p.Output())
	}
	return "http://" + addr
}

// get returns the status code and body of a GET.
func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrape reads /metrics with the Prometheus text parser.
type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t testing.TB, base string) scrape {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// value is the value of the metric name with these labels (name=value pairs); ok is
// false when there is no such series.
func (s scrape) value(name string, labels ...string) (float64, bool) {
	f := s[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// sum adds the values of every series of name with these labels.
func (s scrape) sum(name string, labels ...string) float64 {
	total := 0.0
	f := s[name]
	if f == nil {
		return 0
	}
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				match = false
			}
		}
		if match {
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return total
}

// A projector with --metrics-addr, catching up with 3000 events and then following
// writers: /metrics is scraped and parsed throughout; the lag is seen above 0 and
// goes to 0; events handled add up to the stream; /healthz and /readyz answer 200.
func TestMetricsScrapedWhileCatchingUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newReadModelDB(t)
	appendN(t, pool, "pre", 600, 5) // 3000 events before the worker starts
	w := startWorker(t, "metrics", url, "TOTAL_PARTITIONS=2", "PARTITION_KEY=all", "BATCH_SIZE=50",
		"TESTWORKER_SLEEP=1ms", "METRICS_ADDR=127.0.0.1:0")
	base := metricsAddr(t, w)

	var maxLag, maxLagSeconds float64
	stored := func() float64 { return float64(count(t, pool, "SELECT count(*) FROM esgen_events")) }
	writersDone := make(chan struct{})
	var wr writers
	go func() {
		defer close(writersDone)
		wr.run(ctx, t, pool, 2, 1000, 100, 2*time.Millisecond)
	}()
	scrapes := 0
	var last scrape
	waitFor(t, 3*time.Minute, "the lag to go to 0 with every event handled", func() bool {
		if w.exited() {
			t.Fatalf("the worker exited:\n%s", w.Output())
		}
		last = scrapeMetrics(t, base)
		scrapes++
		lag := last.sum("esgen_projection_lag_events", "projection", "rm")
		maxLag = max(maxLag, lag)
		maxLagSeconds = max(maxLagSeconds, last.sum("esgen_projection_lag_seconds", "projection", "rm"))
		select {
		case <-writersDone:
		default:
			return false
		}
		return lag == 0 && last.sum("esgen_projection_events_handled_total", "projection", "rm") == stored()
	})
	if maxLag == 0 || maxLagSeconds == 0 {
		t.Errorf("in %d scrapes the lag was never above 0 (events %v, seconds %v)", scrapes, maxLag, maxLagSeconds)
	}
	for _, k := range []string{"0", "1"} {
		part := []string{"projection", "rm", "partition", k}
		if v, ok := last.value("esgen_projection_lag_events", part...); !ok || v != 0 {
			t.Errorf("partition %s: lag_events %v %v, want 0", k, v, ok)
		}
		if v, ok := last.value("esgen_projection_lag_seconds", part...); !ok || v != 0 {
			t.Errorf("partition %s: lag_seconds %v %v, want 0", k, v, ok)
		}
		handled, _ := last.value("esgen_projection_events_handled_total", part...)
		want := float64(count(t, pool, "SELECT count(*) FROM esgen_events WHERE partition_hash % 2 = $1", k))
		if handled != want {
			t.Errorf("partition %s: %v events handled, the store has %v", k, handled, want)
		}
		if v, _ := last.value("esgen_projection_partition_state", append(part, "state", "running")...); v != 1 {
			t.Errorf("partition %s: not in state running", k)
		}
		if v, _ := last.value("esgen_projection_partition_state", append(part, "state", "stopped")...); v != 0 {
			t.Errorf("partition %s: in state stopped", k)
		}
		if b, _ := last.value("esgen_projection_batches_total", part...); b < 30 {
			t.Errorf("partition %s: %v batches for %v events of 50 at most", k, b, want)
		}
		if _, ok := last.value("esgen_projection_checkpoint_holes", part...); !ok {
			t.Errorf("partition %s: no holes gauge", k)
		}
		if _, ok := last.value("esgen_projection_retries_total", append(part, "cause", "handler")...); !ok {
			t.Errorf("partition %s: no handler retries counter", k)
		}
	}
	if n, _ := last.value("esgen_projection_batch_duration_seconds", "projection", "rm"); n != last.sum("esgen_projection_batches_total") {
		t.Errorf("batch duration observations %v, batches %v", n, last.sum("esgen_projection_batches_total"))
	}
	if v, ok := last.value("esgen_build_info"); !ok || v != 1 || !strings.HasPrefix(labelOf(last["esgen_build_info"], "go_version"), "go1.") {
		t.Errorf("build info: %v %v", v, ok)
	}
	if v, _ := last.value("esgen_projection_partitions", "projection", "rm"); v != 2 {
		t.Errorf("partitions gauge %v, want 2", v)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(t, base+path); code != http.StatusOK || body != "ok\n" {
			t.Errorf("%s: %d %q", path, code, body)
		}
	}
	if code := w.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	checkReadModel(t, pool)
	t.Logf("%d scrapes parsed; lag up to %v events and %.2f s, then 0", scrapes, maxLag, maxLagSeconds)
}

func labelOf(f *dto.MetricFamily, name string) string {
	if f == nil || len(f.GetMetric()) == 0 {
		return ""
	}
	for _, l := range f.GetMetric()[0].GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// A handler fails on an event of partition 0 past its retries, in a projector with
// --metrics-addr: the partition stays stopped in the running process, /healthz and
// /readyz fail naming it, partition 1 goes on. esgen skip records the event with who
// and why; the stopped partition goes on by itself, /healthz recovers, esgen status
// shows the skip, and every event but the skipped one is applied once.
func TestStoppedPartitionFailsHealthUntilSkipped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newReadModelDB(t)
	appendN(t, pool, "agg", 40, 5)
	var poisonID string
	if err := pool.QueryRow(ctx, `SELECT event_id::text FROM esgen_events WHERE partition_hash % 2 = 0
		ORDER BY transaction_id, global_position OFFSET 9 LIMIT 1`).Scan(&poisonID); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, "w", url, "TOTAL_PARTITIONS=2", "PARTITION_KEY=all", "TESTWORKER_FAIL_EVENT="+poisonID,
		"MAX_RETRIES=2", "METRICS_ADDR=127.0.0.1:0")
	base := metricsAddr(t, w)
	waitFor(t, time.Minute, "partition 0 to stop", func() bool {
		code, body := get(t, base+"/healthz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "partition 0 stopped") && strings.Contains(body, poisonID)
	})
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "partition 0 stopped") {
		t.Errorf("/readyz with a stopped partition: %d %q", code, body)
	}
	m := scrapeMetrics(t, base)
	p0 := []string{"projection", "rm", "partition", "0"}
	if v, _ := m.value("esgen_projection_partition_state", append(p0, "state", "stopped")...); v != 1 {
		t.Errorf("partition 0 not in state stopped")
	}
	if v, _ := m.value("esgen_projection_retries_total", append(p0, "cause", "handler")...); v < 2 {
		t.Errorf("partition 0: %v handler retries, want at least 2", v)
	}
	// The process lives on, and so does partition 1, also with new events.
	appendN(t, pool, "late", 20, 1)
	waitFor(t, time.Minute, "partition 1 to apply all its events", func() bool {
		return count(t, pool, "SELECT count(*) FROM rm_events WHERE partition_key = 1") ==
			count(t, pool, "SELECT count(*) FROM esgen_events WHERE partition_hash % 2 = 1")
	})
	if n := count(t, pool, "SELECT count(*) FROM rm_events WHERE partition_key = 0"); n != 9 {
		t.Fatalf("partition 0 applied %d events, want the 9 before the poison event", n)
	}

	// Usage errors first: no reason, no event.
	if _, stderr, code := esgen(t, url, "skip", "rm", "--event", poisonID); code != 2 || !strings.Contains(stderr, "--reason") {
		t.Errorf("skip without a reason: exit %d, %s", code, stderr)
	}
	if _, stderr, code := esgen(t, url, "skip", "rm", "--reason", "x"); code != 2 || !strings.Contains(stderr, "--event") {
		t.Errorf("skip without an event: exit %d, %s", code, stderr)
	}
	stdout, stderr, code := esgen(t, url, "skip", "rm", "--event", poisonID, "--reason", "payload refers to a deleted account (ticket 42)", "--by", "ann")
	if code != 0 || !strings.Contains(stdout, poisonID) {
		t.Fatalf("esgen skip: exit %d\n%s%s", code, stdout, stderr)
	}
	waitFor(t, time.Minute, "partition 0 to go on and /healthz to recover", func() bool {
		code, _ := get(t, base+"/healthz")
		return code == http.StatusOK && count(t, pool, "SELECT count(*) FROM rm_events WHERE partition_key = 0") ==
			count(t, pool, "SELECT count(*) FROM esgen_events WHERE partition_hash % 2 = 0")-1
	})
	waitFor(t, time.Minute, "the skip to be counted", func() bool {
		v, _ := scrapeMetrics(t, base).value("esgen_projection_events_skipped_total", p0...)
		return v == 1
	})
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after the skip: %d %q", code, body)
	}
	// Recorded with who, when and why, and where it was passed.
	var by, reason, dbUser string
	var passed bool
	var part int
	if err := pool.QueryRow(ctx, `SELECT skipped_by, reason, database_user, passed_at IS NOT NULL, coalesce(passed_partition, -1)
		FROM esgen_skipped_events WHERE projection = 'rm' AND event_id = $1`, poisonID).Scan(&by, &reason, &dbUser, &passed, &part); err != nil {
		t.Fatal(err)
	}
	if by != "ann" || reason != "payload refers to a deleted account (ticket 42)" || dbUser == "" || !passed || part != 0 {
		t.Errorf("skip record: by %q, reason %q, database user %q, passed %v in partition %d", by, reason, dbUser, passed, part)
	}
	if recs := w.logLines("event skipped on purpose (esgen skip); not handled"); len(recs) != 1 || recs[0]["event_id"] != poisonID {
		t.Errorf("no log line for the skipped event:\n%s", w.Output())
	}
	stdout, stderr, code = esgen(t, url, "status", "rm")
	if code != 0 || !strings.Contains(stdout, "skipped poison events (esgen skip): 1") || !strings.Contains(stdout, poisonID) ||
		!strings.Contains(stdout, "by ann") || !strings.Contains(stdout, "payload refers to a deleted account (ticket 42)") ||
		!strings.Contains(stdout, "passed in partition 0/2") {
		t.Errorf("esgen status does not show the skip: exit %d\n%s%s", code, stdout, stderr)
	}
	// Skipping it again, or an event that was handled, is refused.
	if _, stderr, code := esgen(t, url, "skip", "rm", "--event", poisonID, "--reason", "again"); code != 1 || !strings.Contains(stderr, "skipped already, by ann") {
		t.Errorf("second skip: exit %d: %s", code, stderr)
	}
	if code := w.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	missing := count(t, pool, "SELECT count(*) FROM esgen_events e WHERE NOT EXISTS (SELECT 1 FROM rm_events r WHERE r.event_id = e.event_id)")
	poisonMissing := count(t, pool, "SELECT count(*) FROM esgen_events e WHERE e.event_id = $1 AND NOT EXISTS (SELECT 1 FROM rm_events r WHERE r.event_id = e.event_id)", poisonID)
	if missing != 1 || poisonMissing != 1 {
		t.Fatalf("%d events not applied (want only the skipped one)", missing)
	}
}

// A handler that panics logs its stack once; a payload that does not decode stops its
// partition at once, without the five retries; a panic is retried like an error.
func TestPanicStackAndUndecodablePayload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newReadModelDB(t)
	// Payloads {"n": <int>}, and one that does not decode in partition 1.
	for i := range 20 {
		appendPayload(t, pool, fmt.Sprintf("a-%d", i), fmt.Sprintf(`{"n": %d}`, i))
	}
	var panicID, badID string
	if err := pool.QueryRow(ctx, `SELECT event_id::text FROM esgen_events WHERE partition_hash % 2 = 0
		ORDER BY transaction_id, global_position OFFSET 3 LIMIT 1`).Scan(&panicID); err != nil {
		t.Fatal(err)
	}
	for i := 0; badID == ""; i++ {
		id := appendPayload(t, pool, fmt.Sprintf("bad-%d", i), `{"n": "seven"}`)
		var p int64
		if err := pool.QueryRow(ctx, `SELECT partition_hash % 2 FROM esgen_events WHERE event_id = $1`, id).Scan(&p); err != nil {
			t.Fatal(err)
		}
		if p == 1 {
			badID = id
		}
	}
	w0 := startWorker(t, "panics", url, "TOTAL_PARTITIONS=2", "PARTITION_KEY=0", "TESTWORKER_PANIC_EVENT="+panicID, "TESTWORKER_DECODE=1", "MAX_RETRIES=2")
	w1 := startWorker(t, "decode", url, "TOTAL_PARTITIONS=2", "PARTITION_KEY=1", "TESTWORKER_DECODE=1")
	if code := w0.wait(t, time.Minute); code != 1 {
		t.Fatalf("panicking worker: exit %d:\n%s", code, w0.Output())
	}
	panics := w0.logLines("handler panicked")
	if len(panics) != 1 || panics[0]["event_id"] != panicID || !strings.Contains(fmt.Sprint(panics[0]["stack"]), "testworker/main.go") ||
		!strings.Contains(fmt.Sprint(panics[0]["panic"]), "assignment to entry in nil map") {
		t.Errorf("the panic's stack is not logged once:\n%s", w0.Output())
	}
	if recs := w0.logLines("handler failed; partition stopped before the event"); len(recs) != 1 || recs[0]["attempts"] != float64(3) {
		t.Errorf("a panic is retried like an error (MAX_RETRIES=2: 3 attempts):\n%s", w0.Output())
	}
	if code := w1.wait(t, time.Minute); code != 1 {
		t.Fatalf("decoding worker: exit %d:\n%s", code, w1.Output())
	}
	recs := w1.logLines("handler failed; partition stopped before the event")
	if len(recs) != 1 || recs[0]["event_id"] != badID || recs[0]["permanent"] != true || recs[0]["attempts"].(float64) > 2 {
		t.Errorf("an undecodable payload is retried (want a stop after at most 2 attempts, the first in a larger batch):\n%s", w1.Output())
	}
	if n := len(w1.logLines("handler failed, retrying")); n != 0 {
		t.Errorf("%d retries of an undecodable payload", n)
	}
}

// appendPayload appends one event with this payload and returns its id.
func appendPayload(t testing.TB, pool *pgxpool.Pool, agg, payload string) string {
	t.Helper()
	id := uuid.New()
	if _, err := eventstore.Append(context.Background(), pool, "Counter", agg, eventstore.Any,
		eventstore.EventData{ID: id, Type: "Tick", Payload: []byte(payload)}); err != nil {
		t.Fatal(err)
	}
	return id.String()
}

// Logs stay calm: an idle partition logs no progress lines, one that handled events
// does; the positions in the log are those esgen status prints.
func TestCalmLogsAndPositions(t *testing.T) {
	t.Parallel()
	url, pool := newReadModelDB(t)
	appendN(t, pool, "a", 100, 3)
	w := startWorker(t, "calm", url, "PROGRESS_INTERVAL=100ms", "BATCH_SIZE=20", "TESTWORKER_SLEEP=2ms")
	waitApplied(t, pool, time.Minute, allAlive(w))
	// The line about the last interval with events comes at the start of the next.
	time.Sleep(300 * time.Millisecond)
	moving := len(w.logLines("progress"))
	time.Sleep(1500 * time.Millisecond) // fifteen progress intervals, idle
	idle := len(w.logLines("progress")) - moving
	if moving == 0 || idle != 0 {
		t.Errorf("%d progress lines while handling events, %d while idle (want some, then none)", moving, idle)
	}
	if code := w.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	stopped := w.logLines("partition stopped")
	st, err := projection.Status(context.Background(), pool, "rm")
	if err != nil {
		t.Fatal(err)
	}
	logged := fmt.Sprint(stopped[0]["checkpoint"])
	if len(stopped) != 1 || logged != st.Partitions[0].Checkpoint.String() {
		t.Errorf("the log says checkpoint %q, status %q", logged, st.Partitions[0].Checkpoint.String())
	}
	stdout, _, code := esgen(t, url, "status", "rm")
	if !regexp.MustCompile(`(?m)^\s+0/1\s+`+regexp.QuoteMeta(st.Partitions[0].Checkpoint.Position.String())+`\s`).MatchString(stdout) || code != 0 {
		t.Errorf("esgen status does not print the checkpoint %s as the log does:\n%s", logged, stdout)
	}
}

// The database goes away for several seconds under a projector with --metrics-addr:
// /readyz fails at once, /healthz once the retries last longer than HEALTH_THRESHOLD;
// the retries back off to at most a few seconds, the log says so calmly and says
// when the database is back; then both checks pass and every event is applied once.
func TestDatabaseOutageHealthAndRecovery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, url, pool := privateReadModelDB(t, "it stops the server")
	appendN(t, pool, "a", 50, 2)
	w := startWorker(t, "w", url, "TOTAL_PARTITIONS=2", "PARTITION_KEY=all", "METRICS_ADDR=127.0.0.1:0", "HEALTH_THRESHOLD=2s")
	base := metricsAddr(t, w)
	waitApplied(t, pool, time.Minute, allAlive(w))
	waitFor(t, time.Minute, "/readyz to pass", func() bool { code, _ := get(t, base+"/readyz"); return code == http.StatusOK })
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	waitFor(t, time.Minute, "/readyz to fail", func() bool {
		code, body := get(t, base+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "waits for the database")
	})
	waitFor(t, time.Minute, "/healthz to fail", func() bool {
		code, body := get(t, base+"/healthz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "has retried the database for")
	})
	// Long enough for the backoff to reach its cap.
	time.Sleep(time.Until(down.Add(12 * time.Second)))
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "/healthz and /readyz to pass again", func() bool {
		h, _ := get(t, base+"/healthz")
		r, _ := get(t, base+"/readyz")
		return h == http.StatusOK && r == http.StatusOK
	})
	appendN(t, pool, "b", 20, 1)
	waitApplied(t, pool, time.Minute, allAlive(w))
	m := scrapeMetrics(t, base)
	if v := m.sum("esgen_projection_retries_total", "cause", "database"); v < 2 {
		t.Errorf("%v database retries counted", v)
	}
	if code := w.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	checkReadModel(t, pool)
	// Backoff at most 5 s (plus jitter); the first failure is logged at warn level, and
	// then at most every 30 s per partition, not every retry; the return is logged.
	var warns int
	for _, msg := range []string{"database error, retrying", "database still unavailable, retrying"} {
		for _, rec := range w.logLines(msg) {
			warns++
			d, err := time.ParseDuration(fmt.Sprint(rec["retry_in"]))
			if err != nil || d > 6250*time.Millisecond {
				t.Errorf("retry_in %v (%v), want at most 5 s plus jitter", rec["retry_in"], err)
			}
		}
	}
	back := w.logLines("database reachable again; continuing")
	if warns == 0 || warns > 4 || len(back) != 2 {
		t.Errorf("%d warnings about the database (want 1 per partition), %d lines saying it is back (want 2):\n%s", warns, len(back), w.Output())
	}
}
