package gen_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/internal/pgtest"
)

// TestEndToEndLivingSpec takes a module through a change of its events and of what
// its projections handle, with real processes:
//
//  1. Events are stored with the first spec (OrderPlaced version 1, customer_id) and
//     two projections, orders and shipping, handle OrderPlaced.
//  2. Renaming customer_id in place is refused by go generate (esgen.yaml:LINE,
//     nothing written). Done as a new version 2 with its upcaster, it is accepted, and
//     both projections now handle OrderShipped too.
//  3. The new projectors refuse to start (exit 2), naming OrderShipped and how many of
//     its events are behind their checkpoints.
//  4. orders is rebuilt: an old projector still running is fenced off and stops; the
//     new one clears the read model (Reset) and replays; esgen rebuild --watch shows
//     the progress. The read model is right for old (upcast) and new events, old
//     shipments included.
//  5. shipping accepts the skip instead: its read model lacks the old shipments, and
//     esgen status says so.
func TestEndToEndLivingSpec(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds a module and runs PostgreSQL")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	root := checkoutRoot(t)
	mod := t.TempDir()
	writeFile(t, filepath.Join(mod, "go.mod"), "module example.com/shop\n\ngo 1.26\n")
	requireCheckout(t, root, mod)
	goEnv := moduleEnv()
	run(t, mod, goEnv, "go", "get", "-tool", "github.com/esgen-dev/esgen/cmd/esgen")
	writeFile(t, filepath.Join(mod, "generate.go"), "package shop\n\n//go:generate go tool esgen generate\n")
	spec := filepath.Join(mod, "esgen.yaml")
	testdata := func(name string) string { return readFile(t, filepath.Join("testdata", name)) }
	forShipping := func(s string) string { return strings.ReplaceAll(s, "orders", "shipping") }

	// 1. The first spec, its handlers and read models; events stored with it.
	writeFile(t, spec, testdata("e2e_living_v1.yaml"))
	run(t, mod, goEnv, "go", "generate", "./...")
	writeFile(t, filepath.Join(mod, "sql", "migrations", "100_orders.sql"), testdata("e2e_living.sql"))
	writeFile(t, filepath.Join(mod, "sql", "migrations", "101_shipping.sql"), forShipping(testdata("e2e_living.sql")))
	writeFile(t, filepath.Join(mod, "projections", "orders", "handlers.go"), testdata("e2e_living_handlers_v1.go"))
	writeFile(t, filepath.Join(mod, "projections", "shipping", "handlers.go"), forShipping(testdata("e2e_living_handlers_v1.go")))
	writeFile(t, filepath.Join(mod, "cmd", "seed", "main.go"), testdata("e2e_living_seed_v1.go"))
	bin1 := filepath.Join(mod, "bin1")
	run(t, mod, goEnv, "go", "build", "-o", bin1+string(filepath.Separator), "./...")

	dbURL := pgtest.NewEmptyDatabase(t)
	dbEnv := append(moduleEnv(), "DATABASE_URL="+dbURL)
	run(t, mod, dbEnv, "go", "tool", "esgen", "migrate")
	run(t, mod, dbEnv, filepath.Join(bin1, "seed"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// Each projection handles the six orders and its checkpoint passes the shipments.
	for _, p := range []string{"orders", "shipping"} {
		runProjector(t, ctx, conn, filepath.Join(bin1, p+"-projector"), dbURL, `SELECT count(*) = 6 FROM `+p+` WHERE carrier IS NULL
			AND (SELECT bool_and(last_position >= (SELECT max(global_position) FROM esgen_events)) FROM esgen_checkpoints WHERE projection = '`+p+`')`)
	}

	// 2. The rename in place is refused, and nothing is written.
	eventsGo := readFile(t, filepath.Join(mod, "generated", "events", "events.go"))
	lock := readFile(t, filepath.Join(mod, "esgen.lock.json"))
	writeFile(t, spec, testdata("e2e_living_rename.yaml"))
	out, err := runErr(mod, goEnv, "go", "generate", "./...")
	if err == nil || !strings.Contains(out, "esgen.yaml:6:30: aggregates.Order.events.OrderPlaced.fields.buyer_id: field buyer_id of OrderPlaced version 1 is published as customer_id (esgen.lock.json)") ||
		!strings.Contains(out, "add version 2") || !strings.Contains(out, "nothing written") {
		t.Fatalf("go generate of the rename in place: %v\n%s", err, out)
	}
	if readFile(t, filepath.Join(mod, "generated", "events", "events.go")) != eventsGo || readFile(t, filepath.Join(mod, "esgen.lock.json")) != lock {
		t.Fatal("the refused generate wrote files")
	}
	// As version 2: the upcaster stub and the OnOrderShipped stubs are written, and
	// the generated code builds with the stub; then the user writes them and changes
	// the code that used CustomerID.
	writeFile(t, spec, testdata("e2e_living_v2.yaml"))
	out = run(t, mod, goEnv, "go", "generate", "./...")
	for _, want := range []string{"created   generated/events/versions/versions.go", "created   upcasters/upcasters.go",
		"appended  projections/orders/handlers.go (OnOrderShipped)", "appended  projections/shipping/handlers.go (OnOrderShipped)", "updated   esgen.lock.json"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("go generate of version 2 does not report %q:\n%s", want, out)
		}
	}
	run(t, mod, goEnv, "go", "vet", "./generated/...", "./upcasters")
	writeFile(t, filepath.Join(mod, "upcasters", "upcasters.go"), testdata("e2e_living_upcasters.go"))
	writeFile(t, filepath.Join(mod, "projections", "orders", "handlers.go"), testdata("e2e_living_handlers_v2.go"))
	writeFile(t, filepath.Join(mod, "projections", "shipping", "handlers.go"), forShipping(testdata("e2e_living_handlers_v2.go")))
	writeFile(t, filepath.Join(mod, "cmd", "seed", "main.go"), testdata("e2e_living_seed_v2.go"))
	bin2 := filepath.Join(mod, "bin2")
	run(t, mod, goEnv, "go", "build", "-o", bin2+string(filepath.Separator), "./...")

	// 3. Both new projectors refuse: OrderShipped has 3 events behind their checkpoints.
	for _, p := range []string{"orders", "shipping"} {
		code, log := runToExit(t, filepath.Join(bin2, p+"-projector"), dbURL)
		if code != 2 || !strings.Contains(log, "projection "+p+" now handles OrderShipped (3 events), but those events are at or before its checkpoints") ||
			!strings.Contains(log, "esgen rebuild "+p) || !strings.Contains(log, "esgen accept-skip "+p+" OrderShipped") {
			t.Fatalf("%s-projector of the new spec: exit %d\n%s", p, code, log)
		}
	}

	// 4. Rebuild orders. An old projector still runs: the request fences it off.
	old := startProjector(t, filepath.Join(bin1, "orders-projector"), dbURL)
	pgtest.WaitFor(t, time.Minute, "the old orders-projector to start", func() bool { return strings.Contains(old.log.String(), `msg="partition started"`) })
	out = run(t, mod, dbEnv, "go", "tool", "esgen", "rebuild", "orders", "--yes", "--no-wait")
	if !strings.Contains(out, "requested a rebuild of projection orders (generation 2)") {
		t.Errorf("esgen rebuild:\n%s", out)
	}
	if code := old.wait(t, time.Minute); code != 1 || !strings.Contains(old.log.String(), "projection orders is being rebuilt (esgen rebuild, generation 2): this worker of generation 1 stopped") {
		t.Fatalf("the old orders-projector: exit %d\n%s", code, old.log.String())
	}
	// New events, stored with version 2 (the seed also reads an old order, upcast).
	run(t, mod, dbEnv, filepath.Join(bin2, "seed"))
	rebuild := startProjector(t, filepath.Join(bin2, "orders-projector"), dbURL)
	out = run(t, mod, dbEnv, "go", "tool", "esgen", "rebuild", "orders", "--watch", "--interval", "100ms")
	if !strings.Contains(out, "esgen rebuild: orders: generation 2: caught up, 16 events since ") {
		t.Errorf("esgen rebuild --watch:\n%s", out)
	}
	waitSQL(t, ctx, conn, `SELECT count(*) = 10 AND count(carrier) = 6 FROM orders`)
	if code := rebuild.stop(t); code != 0 {
		t.Errorf("the rebuilding orders-projector: exit %d\n%s", code, rebuild.log.String())
	}
	if !strings.Contains(rebuild.log.String(), `msg="rebuild started: read model cleared (Reset), checkpoints at the start of the stream" projection=orders generation=2 events=16`) {
		t.Errorf("the rebuilding projector's log:\n%s", rebuild.log.String())
	}
	checkRows(t, ctx, conn, "orders", map[string]string{
		"o-0": "customer-o-0 10 EUR dhl", "o-1": "customer-o-1 20 EUR ups", "o-2": "customer-o-2 30 EUR dhl",
		"o-3": "customer-o-3 40 EUR -", "o-4": "customer-o-4 50 EUR dhl", "o-5": "customer-o-5 60 EUR -",
		"n-0": "buyer-n-0 100 USD ups", "n-1": "buyer-n-1 200 USD ups", "n-2": "buyer-n-2 300 USD -", "n-3": "buyer-n-3 400 USD -",
	})

	// 5. shipping accepts the skip: the old shipments stay unknown to it.
	out = run(t, mod, dbEnv, "go", "tool", "esgen", "accept-skip", "shipping", "OrderShipped")
	if !strings.Contains(out, "projection shipping handles OrderShipped from now on and never the 3 earlier event(s)") {
		t.Errorf("esgen accept-skip:\n%s", out)
	}
	runProjector(t, ctx, conn, filepath.Join(bin2, "shipping-projector"), dbURL, `SELECT count(*) = 10 AND count(carrier) = 3 FROM shipping`)
	checkRows(t, ctx, conn, "shipping", map[string]string{
		"o-0": "customer-o-0 10 - -", "o-1": "customer-o-1 20 - ups", "o-2": "customer-o-2 30 - -",
		"o-3": "customer-o-3 40 - -", "o-4": "customer-o-4 50 - -", "o-5": "customer-o-5 60 - -",
		"n-0": "buyer-n-0 100 USD ups", "n-1": "buyer-n-1 200 USD ups", "n-2": "buyer-n-2 300 USD -", "n-3": "buyer-n-3 400 USD -",
	})
	out = run(t, mod, dbEnv, "go", "tool", "esgen", "status")
	if !strings.Contains(out, "projection shipping:") || !strings.Contains(out, "  event type skipped on purpose (esgen accept-skip): 3 OrderShipped event(s) from before it handled the type were never handled (accepted ") ||
		!strings.Contains(out, "  rebuild: generation 2: caught up, 16 events since ") {
		t.Errorf("esgen status:\n%s", out)
	}
}

// projectorProc is a projector process and its output.
type projectorProc struct {
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan int
}

// lockedBuffer is a process's output, read while the process writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startProjector(t *testing.T, bin, dbURL string) *projectorProc {
	t.Helper()
	p := &projectorProc{cmd: exec.Command(bin), log: &lockedBuffer{}, done: make(chan int, 1)}
	p.cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "POLL_INTERVAL=200ms")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			p.done <- 0
		case errors.As(err, &ee):
			p.done <- ee.ExitCode()
		default:
			p.done <- -1
		}
	}()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	return p
}

// wait waits for the process to exit by itself and returns its exit code.
func (p *projectorProc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case code := <-p.done:
		return code
	case <-time.After(d):
		t.Fatalf("%s did not exit within %s\n%s", filepath.Base(p.cmd.Path), d, p.log)
		return -1
	}
}

// stop sends SIGTERM and returns the exit code.
func (p *projectorProc) stop(t *testing.T) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.wait(t, 30*time.Second)
}

// runToExit runs a projector that is expected to stop by itself.
func runToExit(t *testing.T, bin, dbURL string) (int, string) {
	t.Helper()
	p := startProjector(t, bin, dbURL)
	code := p.wait(t, time.Minute)
	return code, p.log.String()
}

// runProjector runs a projector until the query cond returns true, then stops it; it
// must exit 0.
func runProjector(t *testing.T, ctx context.Context, conn *pgx.Conn, bin, dbURL, cond string) {
	t.Helper()
	p := startProjector(t, bin, dbURL)
	pgtest.WaitFor(t, 2*time.Minute, filepath.Base(bin)+": "+cond, func() bool {
		select {
		case code := <-p.done:
			t.Fatalf("%s exited %d\n%s", filepath.Base(bin), code, p.log)
		default:
		}
		var ok bool
		err := conn.QueryRow(ctx, cond).Scan(&ok)
		return err == nil && ok
	})
	if code := p.stop(t); code != 0 {
		t.Fatalf("%s: exit %d\n%s", filepath.Base(bin), code, p.log)
	}
}

func waitSQL(t *testing.T, ctx context.Context, conn *pgx.Conn, cond string) {
	t.Helper()
	pgtest.WaitFor(t, 2*time.Minute, cond, func() bool {
		var ok bool
		err := conn.QueryRow(ctx, cond).Scan(&ok)
		return err == nil && ok
	})
}

// checkRows compares a read-model table with want: order id → "buyer amount currency
// carrier", "-" for NULL.
func checkRows(t *testing.T, ctx context.Context, conn *pgx.Conn, table string, want map[string]string) {
	t.Helper()
	rows, err := conn.Query(ctx, `SELECT order_id, buyer || ' ' || amount || ' ' || coalesce(currency, '-') || ' ' || coalesce(carrier, '-') FROM `+table)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for rows.Next() {
		var id, row string
		if err := rows.Scan(&id, &row); err != nil {
			t.Fatal(err)
		}
		got[id] = row
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s %s: %q, want %q", table, id, got[id], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s has %d rows, want %d: %v", table, len(got), len(want), got)
	}
}

// runErr runs a command and returns its output and error.
func runErr(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
