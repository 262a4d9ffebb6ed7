package projector

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/projection"
)

func TestParseSettings(t *testing.T) {
	t.Parallel()
	h := projection.HandlerFunc(func(context.Context, pgx.Tx, *eventstore.Event) error { return nil })
	part := projection.Projection{Name: "p", Partitioned: true, Handler: h}
	single := projection.Projection{Name: "s", Handler: h}
	db := "DATABASE_URL=postgres://x@localhost/db"
	cases := []struct {
		p    projection.Projection
		args []string
		env  []string
		want string // error substring; "" for success
		keys []int
		tot  int
	}{
		{part, nil, []string{db}, "", []int{0}, 1},
		{part, nil, []string{db, "PARTITION_KEY=2", "TOTAL_PARTITIONS=4"}, "", []int{2}, 4},
		{part, []string{"--partition-key=0,1", "--total-partitions=4"}, []string{db, "PARTITION_KEY=3"}, "", []int{0, 1}, 4},
		{part, []string{"--partition-key=all"}, []string{db, "TOTAL_PARTITIONS=3"}, "", nil, 3},
		{part, nil, []string{db, "PARTITION_KEY=5", "TOTAL_PARTITIONS=4"}, "PARTITION_KEY=5 is out of range: with 4 partitions the key must be 0..3", nil, 0},
		{part, []string{"--partition-key=4", "--total-partitions=4"}, []string{db}, "--partition-key=4 is out of range: with 4 partitions the key must be 0..3", nil, 0},
		{part, nil, []string{db, "PARTITION_KEY=1"}, "PARTITION_KEY=1 is out of range: with 1 partition the only key is 0", nil, 0},
		{part, nil, []string{db, "TOTAL_PARTITIONS=4"}, "PARTITION_KEY is not set: with TOTAL_PARTITIONS=4 set it to 0..3", nil, 0},
		{part, nil, []string{db, "TOTAL_PARTITIONS=0"}, "TOTAL_PARTITIONS=0 is not a valid partition count", nil, 0},
		{part, nil, []string{db, "PARTITION_KEY=x", "TOTAL_PARTITIONS=2"}, "PARTITION_KEY=x is not a partition key", nil, 0},
		{part, []string{"--partition-key=1,1", "--total-partitions=2"}, []string{db}, "lists partition 1 twice", nil, 0},
		{single, nil, []string{db, "TOTAL_PARTITIONS=2"}, "projection s is not partitioned", nil, 0},
		{part, nil, nil, "DATABASE_URL is not set", nil, 0},
		{part, nil, []string{db, "LOG_LEVEL=loud"}, "LOG_LEVEL=loud is not a log level", nil, 0},
		{part, []string{"--log-format=xml"}, []string{db}, "--log-format=xml is not a log format", nil, 0},
		{part, nil, []string{db, "POLL_INTERVAL=soon"}, "POLL_INTERVAL=soon is not a valid duration", nil, 0},
		{part, []string{"--batch-size=0"}, []string{db}, "--batch-size=0 is not a valid batch size", nil, 0},
		{part, []string{"extra"}, []string{db}, `unexpected argument "extra"`, nil, 0},
		{part, []string{"--bogus"}, []string{db}, "flag provided but not defined", nil, 0},
		{part, nil, []string{db, "TOTAL_PARTITIONS=100000", "PARTITION_KEY=0"}, "TOTAL_PARTITIONS=100000 is more than the 1024 partitions a projection may have", nil, 0},
		{part, nil, []string{db, "TOTAL_PARTITIONS=1024", "PARTITION_KEY=1023"}, "", []int{1023}, 1024},
		{part, nil, []string{db, "NO_NOTIFY=maybe"}, "NO_NOTIFY=maybe is not a boolean: use true or false (also 1/0, yes/no, on/off)", nil, 0},
		{part, []string{"--rescale=sometimes"}, []string{db}, "not a boolean", nil, 0},
		{part, nil, []string{db, "SHUTDOWN_TIMEOUT=-1s"}, "SHUTDOWN_TIMEOUT=-1s is not a valid duration", nil, 0},
		{part, nil, []string{db, "HEALTH_THRESHOLD=never"}, "HEALTH_THRESHOLD=never is not a valid duration", nil, 0},
	}
	for _, c := range cases {
		env := map[string]string{}
		for _, kv := range c.env {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
		s, err := parseSettings(c.p, c.args, lookup, io.Discard, io.Discard)
		if c.want != "" {
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%v %v: got %v, want %q", c.args, c.env, err, c.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v %v: %v", c.args, c.env, err)
			continue
		}
		if !slices.Equal(s.cfg.Partitions, c.keys) || s.cfg.TotalPartitions != c.tot {
			t.Errorf("%v %v: keys %v of %d, want %v of %d", c.args, c.env, s.cfg.Partitions, s.cfg.TotalPartitions, c.keys, c.tot)
		}
	}
	// Flags win over the environment; the rest of the settings are read.
	env := map[string]string{"DATABASE_URL": "postgres://env", "LOG_LEVEL": "debug", "NO_NOTIFY": "1", "BATCH_SIZE": "7", "MAX_RETRIES": "0"}
	s, err := parseSettings(part, []string{"--database=postgres://flag", "--poll-interval=250ms", "--log-format=json", "--rescale"},
		func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.url != "postgres://flag" || s.logLevel != slog.LevelDebug || !s.cfg.DisableNotify || s.cfg.BatchSize != 7 ||
		s.cfg.PollInterval != 250*time.Millisecond || s.logFormat != "json" || !s.cfg.Rescale || s.cfg.WithDefaults().MaxRetries != 0 ||
		s.cfg.ShutdownTimeout != projection.DefaultShutdownTimeout || s.healthThreshold != DefaultHealthThreshold || s.metricsAddr != "" {
		t.Errorf("settings: %+v", s)
	}
	// The default drain fits in Kubernetes' default grace period of 30 s.
	if projection.DefaultShutdownTimeout >= 30*time.Second {
		t.Errorf("default shutdown timeout %s is not below Kubernetes' 30 s", projection.DefaultShutdownTimeout)
	}
	// Boolean settings take the usual spellings, from the environment and as flags.
	for v, want := range map[string]bool{"1": true, "true": true, "TRUE": true, "t": true, "yes": true, "Yes": true, "on": true, "y": true,
		"0": false, "false": false, "f": false, "no": false, "off": false, "OFF": false} {
		env := map[string]string{"DATABASE_URL": "postgres://env", "NO_NOTIFY": v, "RESCALE": v, "NO_PARTITION_INDEX": v}
		s, err := parseSettings(part, nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard, io.Discard)
		if err != nil || s.cfg.DisableNotify != want || s.cfg.Rescale != want || s.cfg.NoPartitionIndex != want {
			t.Errorf("NO_NOTIFY=RESCALE=NO_PARTITION_INDEX=%s: %v, notify off %v, rescale %v, no partition index %v; want %v",
				v, err, s.cfg.DisableNotify, s.cfg.Rescale, s.cfg.NoPartitionIndex, want)
		}
		s, err = parseSettings(part, []string{"--database=postgres://flag", "--no-notify=" + v, "--rescale=" + v, "--no-partition-index=" + v},
			func(string) (string, bool) { return "", false }, io.Discard, io.Discard)
		if err != nil || s.cfg.DisableNotify != want || s.cfg.Rescale != want || s.cfg.NoPartitionIndex != want {
			t.Errorf("--no-notify=--rescale=--no-partition-index=%s: %v, %v %v %v", v, err, s.cfg.DisableNotify, s.cfg.Rescale, s.cfg.NoPartitionIndex)
		}
	}
	// The other settings.
	env = map[string]string{"DATABASE_URL": "postgres://env", "METRICS_ADDR": "127.0.0.1:0", "SHUTDOWN_TIMEOUT": "10s", "HEALTH_THRESHOLD": "2m"}
	s, err = parseSettings(part, nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard, io.Discard)
	if err != nil || s.metricsAddr != "127.0.0.1:0" || s.cfg.ShutdownTimeout != 10*time.Second || s.healthThreshold != 2*time.Minute {
		t.Errorf("settings: %v %+v", err, s)
	}
}

func TestRunMainExitCodes(t *testing.T) {
	t.Parallel()
	h := projection.HandlerFunc(func(context.Context, pgx.Tx, *eventstore.Event) error { return nil })
	p := projection.Projection{Name: "p", Partitioned: true, Handler: h}
	var stdout, stderr strings.Builder
	secret := "postgres://x:s3cret-pw@127.0.0.1:1/db"
	env := map[string]string{"DATABASE_URL": secret, "TOTAL_PARTITIONS": "4", "PARTITION_KEY": "5"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if code := runProjection(context.Background(), p, nil, lookup, &stdout, &stderr); code != 2 || stdout.Len() != 0 ||
		stderr.String() != "p-projector: PARTITION_KEY=5 is out of range: with 4 partitions the key must be 0..3\n" {
		t.Errorf("exit %d, output %q", code, stderr.String())
	}
	// -h: the usage on stdout, exit 0, and no password from the environment.
	stdout.Reset()
	stderr.Reset()
	if code := runProjection(context.Background(), p, []string{"-h"}, lookup, &stdout, &stderr); code != 0 || stderr.Len() != 0 ||
		!strings.Contains(stdout.String(), "-total-partitions") || !strings.Contains(stdout.String(), "flags win") ||
		!strings.Contains(stdout.String(), "-metrics-addr") || !strings.Contains(stdout.String(), "-shutdown-timeout") {
		t.Errorf("-h: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	// A usage error: stderr, exit 2.
	stdout.Reset()
	stderr.Reset()
	if code := runProjection(context.Background(), p, []string{"--bogus"}, lookup, &stdout, &stderr); code != 2 || stdout.Len() != 0 ||
		!strings.Contains(stderr.String(), "flag provided but not defined: -bogus") {
		t.Errorf("--bogus: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	// --version: stdout, exit 0.
	stdout.Reset()
	stderr.Reset()
	if code := runProjection(context.Background(), p, []string{"--version"}, lookup, &stdout, &stderr); code != 0 ||
		!strings.HasPrefix(stdout.String(), "p-projector: ") || !strings.Contains(stdout.String(), " go1.") {
		t.Errorf("--version: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	// A malformed URL with a password: named, the password not shown.
	stdout.Reset()
	stderr.Reset()
	env = map[string]string{"DATABASE_URL": "postgres://x:s3cret-pw@127.0.0.1:bad/db"}
	if code := runProjection(context.Background(), p, nil, lookup, &stdout, &stderr); code != 2 || strings.Contains(stderr.String(), "s3cret") {
		t.Errorf("bad URL: exit %d, stderr %q", code, stderr.String())
	}
}

// runProjection is runMain for a projection whose handler needs no constructor, as
// Main runs it.
func runProjection(ctx context.Context, p projection.Projection, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	return runMain(ctx, func(projection.Handler) projection.Projection { return p },
		func(context.Context, Deps) (projection.Handler, error) { return p.Handler, nil }, args, lookupEnv, stdout, stderr)
}

// PARTITION_KEY=auto with its lease time and worker id; the defaults.
func TestParseSettingsAuto(t *testing.T) {
	t.Parallel()
	h := projection.HandlerFunc(func(context.Context, pgx.Tx, *eventstore.Event) error { return nil })
	part := projection.Projection{Name: "p", Partitioned: true, Handler: h}
	parse := func(args []string, env map[string]string) (settings, error) {
		return parseSettings(part, args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard, io.Discard)
	}
	s, err := parse(nil, map[string]string{"DATABASE_URL": "postgres://env", "PARTITION_KEY": "auto", "TOTAL_PARTITIONS": "8", "LEASE_TTL": "2s", "WORKER_ID": "pod-a"})
	if err != nil || !s.cfg.AutoAssign || s.cfg.Partitions != nil || s.cfg.TotalPartitions != 8 || s.cfg.LeaseTTL != 2*time.Second || s.cfg.WorkerID != "pod-a" {
		t.Fatalf("auto from the environment: %v %+v", err, s.cfg)
	}
	s, err = parse([]string{"--partition-key=auto", "--total-partitions=4", "--lease-ttl=9s", "--worker-id=w1"}, map[string]string{"DATABASE_URL": "postgres://env", "WORKER_ID": "env"})
	if err != nil || !s.cfg.AutoAssign || s.cfg.LeaseTTL != 9*time.Second || s.cfg.WorkerID != "w1" {
		t.Fatalf("auto from flags: %v %+v", err, s.cfg)
	}
	s, err = parse(nil, map[string]string{"DATABASE_URL": "postgres://env", "PARTITION_KEY": "auto", "TOTAL_PARTITIONS": "4"})
	if err != nil || s.cfg.LeaseTTL != projection.DefaultLeaseTTL || s.cfg.WorkerID != projection.DefaultWorkerID() {
		t.Fatalf("defaults: %v %+v", err, s.cfg)
	}
	// The default lease keeps a failover (lease time plus at most a second) under 10 s.
	if projection.DefaultLeaseTTL+time.Second >= 10*time.Second {
		t.Errorf("default lease time %s: a failover would take 10 s or more", projection.DefaultLeaseTTL)
	}
	if _, err := parse(nil, map[string]string{"DATABASE_URL": "postgres://env", "PARTITION_KEY": "auto", "LEASE_TTL": "forever"}); err == nil ||
		!strings.Contains(err.Error(), "LEASE_TTL=forever is not a valid duration") {
		t.Fatalf("bad lease time: %v", err)
	}
}

// An auto-assigned worker's monitor follows its claims and releases: the partitions
// it holds are checked and counted, the others not.
func TestMonitorAssignment(t *testing.T) {
	t.Parallel()
	m := newMonitor("p", nil, 4, time.Minute, time.Second)
	if ok, _ := m.ready(); !ok {
		t.Fatal("a worker holding no partition is not ready")
	}
	p1 := projection.Partition{Projection: "p", Key: 1, Total: 4, Generation: 1}
	m.Assignment(p1, projection.AssignmentChange{Kind: projection.AssignClaimed, Worker: "w", PreviousOwner: "dead", Epoch: 2})
	if ok, problems := m.ready(); ok || len(problems) != 1 || !strings.Contains(problems[0], "partition 1 is starting") {
		t.Fatalf("after the claim: ready %v %v", ok, problems)
	}
	m.PartitionState(p1, projection.StateChange{State: projection.StateRunning, Since: time.Now()})
	if ok, _ := m.ready(); !ok {
		t.Fatal("the claimed partition runs, not ready")
	}
	m.PartitionState(p1, projection.StateChange{State: projection.StateStopped, Since: time.Now()})
	m.Assignment(p1, projection.AssignmentChange{Kind: projection.AssignReleased, Worker: "w", Epoch: 2})
	if ok, problems := m.healthy(); !ok {
		t.Fatalf("a released partition fails /healthz: %v", problems)
	}
	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`esgen_projection_assignments_total{change="claimed",projection="p"} 1`,
		`esgen_projection_assignments_total{change="released",projection="p"} 1`,
		`esgen_projection_assignments_total{change="lost",projection="p"} 0`,
		`esgen_projection_failovers_total{projection="p"} 1`,
		`esgen_projection_partitions_owned{projection="p"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, `esgen_projection_partition_state{partition="1"`) {
		t.Error("the released partition still has state series")
	}
}

// A partition key that is neither a key nor all/auto says what is allowed; auto and
// all are taken in any case; an empty worker id keeps the default; a lease shorter
// than projection.MinLeaseTTL is refused.
func TestAutoSettingsEdges(t *testing.T) {
	env := func(kv ...string) func(string) (string, bool) {
		m := map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1/db"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	p := projection.Projection{Name: "balances", Partitioned: true}
	_, err := parseSettings(p, []string{"--partition-key=auto,1", "--total-partitions=4"}, env(), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "use a number 0..3, a list like 0,2, all, or auto") {
		t.Errorf("auto,1: %v", err)
	}
	s, err := parseSettings(p, []string{"--partition-key=AUTO", "--total-partitions=4", "--worker-id="}, env(), io.Discard, io.Discard)
	if err != nil || !s.cfg.AutoAssign || s.cfg.WorkerID != projection.DefaultWorkerID() {
		t.Errorf("AUTO with an empty worker id: %v, auto %v, worker %q", err, s.cfg.AutoAssign, s.cfg.WorkerID)
	}
	_, err = parseSettings(p, nil, env("PARTITION_KEY", "auto", "TOTAL_PARTITIONS", "4", "LEASE_TTL", "100ms"), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "the lease time 100ms is shorter than 1s") {
		t.Errorf("LEASE_TTL=100ms: %v", err)
	}
	// Static workers register with the lease time too, but it moves nothing of theirs.
	if _, err := parseSettings(p, nil, env("PARTITION_KEY", "0", "TOTAL_PARTITIONS", "4", "LEASE_TTL", "100ms"), io.Discard, io.Discard); err != nil {
		t.Errorf("static with LEASE_TTL=100ms: %v", err)
	}
}
