package gen_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/eventstore"
	"github.com/esgen-dev/esgen/gen"
	"github.com/esgen-dev/esgen/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// e2eAccounts is how many accounts the end-to-end test writes, four events each.
const e2eAccounts = 24

// TestEndToEnd takes a new module from `esgen init` to a running partitioned
// projection, the way the README says: esgen and sqlc as tools of the module, go
// generate (which runs esgen generate, and sqlc for the read-model queries), the
// handlers filled in with a dependency built by NewHandlers and writes through sqlc
// queries, go build, go vet, esgen migrate for esgen's tables and the module's,
// events appended with the typed helpers, the generated projector as two processes
// with two partitions, and the read model checked. Then the spec grows by a handled
// event, a new aggregate and a new projection: after go generate the module builds,
// esgen migrate creates the new projection's table, and the user's files are as they
// were.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds a module and runs PostgreSQL")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	root := checkoutRoot(t)
	mod := t.TempDir()

	// 1. esgen init, esgen and sqlc as tools, sqlc: true.
	if _, err := gen.Init(gen.InitOptions{Dir: mod, Module: "example.com/bank"}); err != nil {
		t.Fatalf("init: %v", err)
	}
	requireCheckout(t, root, mod)
	goEnv := moduleEnv()
	run(t, mod, goEnv, "go", "get", "-tool", "github.com/esgen-dev/esgen/cmd/esgen")
	run(t, mod, goEnv, "go", "get", "-tool", "github.com/sqlc-dev/sqlc/cmd/sqlc@v1.31.1")
	specFile := filepath.Join(mod, "esgen.yaml")
	writeFile(t, specFile, strings.Replace(readFile(t, specFile), "\n# sqlc: true", "\nsqlc: true", 1))
	out := run(t, mod, goEnv, "go", "generate", "./...")
	for _, want := range []string{"created   projections/balances/handlers.go", "created   sql/migrations/100_balances.sql",
		"created   sql/queries/balances.sql", "created   sqlc.yaml", "sqlc      generated the read-model queries"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("go generate does not report %q:\n%s", want, out)
		}
	}

	// 2. The user's side: the read model's table and queries, handler bodies and the
	// dependencies NewHandlers builds, a program that appends.
	writeFile(t, filepath.Join(mod, "sql", "migrations", "100_balances.sql"), readFile(t, filepath.Join("testdata", "e2e_balances.sql")))
	writeFile(t, filepath.Join(mod, "sql", "queries", "balances.sql"), readFile(t, filepath.Join("testdata", "e2e_queries.sql")))
	fillHandlers(t, filepath.Join(mod, "projections", "balances", "handlers.go"))
	writeFile(t, filepath.Join(mod, "cmd", "seed", "main.go"), readFile(t, filepath.Join("testdata", "e2e_seed.go")))

	// 3. go generate with the spec unchanged rewrites nothing of esgen's, and sqlc
	// turns the user's queries into code.
	out = run(t, mod, goEnv, "go", "generate", "./...")
	if strings.Contains(out, "created") || strings.Contains(out, "updated") || !strings.Contains(out, "unchanged generated/events/events.go") {
		t.Errorf("go generate with an unchanged spec reported changes:\n%s", out)
	}
	if q := readFile(t, filepath.Join(mod, "generated", "readmodel", "balances.sql.go")); !strings.Contains(q, "func (q *Queries) ApplyToBalance(") {
		t.Fatalf("sqlc did not generate the user's queries:\n%s", q)
	}
	bin := filepath.Join(mod, "bin")
	run(t, mod, goEnv, "go", "build", "-o", bin+string(filepath.Separator), "./...")
	run(t, mod, goEnv, "go", "vet", "./...")

	// 4. esgen migrate: esgen's migrations, then the module's.
	dbURL := pgtest.NewEmptyDatabase(t)
	dbEnv := append(moduleEnv(), "DATABASE_URL="+dbURL)
	out = run(t, mod, dbEnv, "go", "tool", "esgen", "migrate")
	if !strings.Contains(out, "esgen migrate: applied 001_event_store.sql\n") || !strings.HasSuffix(out, "esgen migrate: applied 100_balances.sql\n") {
		t.Fatalf("esgen migrate:\n%s", out)
	}

	// 5. Events through the typed append helpers.
	run(t, mod, dbEnv, filepath.Join(bin, "seed"), "-accounts", strconv.Itoa(e2eAccounts))

	// 6. Two projector processes, one partition each.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var procs []*exec.Cmd
	var logs []*bytes.Buffer
	for key := range 2 {
		var buf bytes.Buffer
		cmd := exec.Command(filepath.Join(bin, "balances-projector"))
		cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "TOTAL_PARTITIONS=2", fmt.Sprintf("PARTITION_KEY=%d", key), "OWNER_PREFIX=vip ")
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
		logs = append(logs, &buf)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		for i, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- p.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("projector %d did not exit cleanly on SIGTERM: %v\n%s", i, err, logs[i])
				}
			case <-time.After(15 * time.Second):
				_ = p.Process.Kill()
				t.Errorf("projector %d ignored SIGTERM\n%s", i, logs[i])
			}
		}
	}
	defer stop()

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	want := int64(4 * e2eAccounts)
	var handled int64
	for {
		if err := conn.QueryRow(ctx, `SELECT coalesce(sum(events), 0) FROM balances`).Scan(&handled); err != nil {
			t.Fatalf("read model: %v", err)
		}
		if handled >= want || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	if handled != want {
		t.Fatalf("read model has %d events handled, want %d\nprojector 0:\n%s\nprojector 1:\n%s", handled, want, logs[0], logs[1])
	}

	// 7. The read model: every account once, every event once and in order.
	rows, err := conn.Query(ctx, `SELECT account_id, owner, currency, balance, events FROM balances ORDER BY account_id`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		id, owner, currency string
		balance, events     int64
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.id, &x.owner, &x.currency, &x.balance, &x.events)
		return x, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != e2eAccounts {
		t.Fatalf("read model has %d accounts, want %d", len(got), e2eAccounts)
	}
	perPartition := [2]int64{}
	for i, r := range got {
		id := fmt.Sprintf("acct-%02d", i)
		wantBalance := int64(100+i) - int64(i/2) + 5
		if r.id != id || r.owner != "vip owner of "+id || r.currency != "EUR" || r.balance != wantBalance || r.events != 4 {
			t.Errorf("read model row %+v, want %s with balance %d after 4 events", r, id, wantBalance)
		}
		perPartition[eventstore.PartitionOf(id, 2)] += 4
	}

	t.Logf("events per partition: %v", perPartition)

	// Each process handled exactly its partition's share.
	cp, err := conn.Query(ctx, `SELECT partition_key, events_handled FROM esgen_checkpoints
		WHERE projection = 'balances' AND partition_count = 2 AND NOT retired ORDER BY partition_key`)
	if err != nil {
		t.Fatal(err)
	}
	counts, err := pgx.CollectRows(cp, func(r pgx.CollectableRow) ([2]int64, error) {
		var c [2]int64
		err := r.Scan(&c[0], &c[1])
		return c, err
	})
	if err != nil {
		t.Fatalf("checkpoints: %v", err)
	}
	if len(counts) != 2 || counts[0] != [2]int64{0, perPartition[0]} || counts[1] != [2]int64{1, perPartition[1]} {
		t.Errorf("checkpoints (partition, events handled) = %v, want [[0 %d] [1 %d]]", counts, perPartition[0], perPartition[1])
	}
	// NewHandlers got each process's pool, logger and partition.
	for key, log := range logs {
		if !regexp.MustCompile(fmt.Sprintf(`msg="balances handlers ready" projection=balances accounts=\d+ partitions=\[%d\]\n`, key)).MatchString(log.String()) {
			t.Errorf("projector %d does not log from NewHandlers:\n%s", key, log)
		}
	}

	// 8. The spec grows: a handled event, an aggregate, a projection.
	userFiles := map[string]string{}
	for _, f := range []string{"projections/balances/handlers.go", "projections/balances/readmodel.go", "sql/migrations/100_balances.sql",
		"sql/queries/balances.sql", "cmd/seed/main.go", "generate.go", "sqlc.yaml"} {
		userFiles[f] = readFile(t, filepath.Join(mod, f))
	}
	spec := readFile(t, specFile)
	for old, grown := range map[string]string{
		"      MoneyWithdrawn: {version: 2, fields: {amount: int64}}\n": "      MoneyWithdrawn: {version: 2, fields: {amount: int64}}\n      AccountClosed: {}\n" +
			"  Customer:\n    events:\n      CustomerRegistered: {fields: {name: string}}\n",
		"Account.MoneyWithdrawn]\n": "Account.MoneyWithdrawn, Account.AccountClosed]\n",
		"\n# Optional: where":       "\n  customers:\n    handles: [Customer.CustomerRegistered]\n\n# Optional: where",
	} {
		if !strings.Contains(spec, old) {
			t.Fatalf("the starter esgen.yaml has no %q:\n%s", old, spec)
		}
		spec = strings.Replace(spec, old, grown, 1)
	}
	writeFile(t, specFile, spec)
	out = run(t, mod, goEnv, "go", "generate", "./...")
	for _, want := range []string{"appended  projections/balances/handlers.go (OnAccountClosed)", "created   projections/customers/handlers.go",
		"created   sql/migrations/101_customers.sql", "created   sql/queries/customers.sql", "created   cmd/customers-projector/main.go"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("go generate after the spec grew does not report %q:\n%s", want, out)
		}
	}
	for f, before := range userFiles {
		after := readFile(t, filepath.Join(mod, f))
		if f == "projections/balances/handlers.go" {
			// The appended stub needs errors, which the filled-in file no longer
			// imported: that import line is all that changed before the stub.
			after = strings.Replace(after, "\t\"errors\"\n", "", 1)
			if !strings.HasPrefix(after, before) || !strings.Contains(after[len(before):], "func (h *Handlers) OnAccountClosed(") {
				t.Errorf("%s: the user's bytes changed, or no stub was appended:\n%s", f, readFile(t, filepath.Join(mod, f)))
			}
			continue
		}
		if after != before {
			t.Errorf("%s changed:\n%s", f, after)
		}
	}
	run(t, mod, goEnv, "go", "build", "-o", bin+string(filepath.Separator), "./...")
	run(t, mod, goEnv, "go", "vet", "./...")
	out = run(t, mod, dbEnv, "go", "tool", "esgen", "migrate")
	if out != "esgen migrate: applied 101_customers.sql\n" {
		t.Errorf("esgen migrate after the spec grew:\n%s", out)
	}
	var customers int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM customers`).Scan(&customers); err != nil || customers != 0 {
		t.Errorf("the new projection's table: %d rows, %v", customers, err)
	}
}

// checkoutRoot finds this checkout's module root above the test's folder.
func checkoutRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(data, []byte("module github.com/esgen-dev/esgen\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no esgen checkout above the test folder")
		}
		dir = parent
	}
}

// requireCheckout points the module at this checkout and pins the checkout's own
// requirements and checksums, so the build needs nothing beyond the module cache.
func requireCheckout(t *testing.T, root, mod string) {
	t.Helper()
	gomod := readFile(t, filepath.Join(mod, "go.mod"))
	var b strings.Builder
	b.WriteString(gomod)
	b.WriteString("\nrequire github.com/esgen-dev/esgen v0.0.0-00010101000000-000000000000\n\n")
	b.WriteString("replace github.com/esgen-dev/esgen => " + root + "\n\n")
	sc := bufio.NewScanner(strings.NewReader(readFile(t, filepath.Join(root, "go.mod"))))
	inRequire := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "require (":
			inRequire = true
			b.WriteString("require (\n")
		case inRequire && line == ")":
			inRequire = false
			b.WriteString(")\n")
		case inRequire:
			b.WriteString("\t" + line + "\n")
		case strings.HasPrefix(line, "require ") && !strings.Contains(line, "("):
			b.WriteString(line + "\n")
		}
	}
	writeFile(t, filepath.Join(mod, "go.mod"), b.String())
	writeFile(t, filepath.Join(mod, "go.sum"), readFile(t, filepath.Join(root, "go.sum")))
}

// moduleEnv lets the go command complete go.mod and go.sum from the module cache and
// the module proxy. esgen itself is not published: the proxy's answer for it falls
// through ("|off") to the replace that points at this checkout.
func moduleEnv() []string {
	return []string{"GOFLAGS=-mod=mod -buildvcs=false", "GOWORK=off", "GOTOOLCHAIN=local", "GOPROXY=" + proxyThenOff()}
}

// proxyThenOff is the configured module proxies (not direct, which would ask the
// repository's host), then "off" after any error.
func proxyThenOff() string {
	out, _ := exec.Command("go", "env", "GOPROXY").Output()
	var list []string
	for _, p := range strings.FieldsFunc(strings.TrimSpace(string(out)), func(r rune) bool { return r == ',' || r == '|' }) {
		if p != "direct" && p != "off" {
			list = append(list, p)
		}
	}
	return strings.Join(append(list, "off"), "|")
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

func fileExists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fillHandlers fills in the handler stubs the way a user edits the file: Handlers
// embeds the readModel of testdata/e2e_balances.go (copied next to it as
// readmodel.go), NewHandlers builds it from the process's dependencies, and Reset
// truncates the table. OnAccountOpened keeps the stub's queue q and writes through it
// (the sqlc query runs queued, sent with the batch); the two others check
// RowsAffected, so their bodies become calls that write through tx. The errors import
// goes when nothing uses it any more.
func fillHandlers(t *testing.T, file string) {
	t.Helper()
	src := readFile(t, file)
	replace := func(old, filled string) {
		t.Helper()
		if !strings.Contains(src, old) {
			t.Fatalf("%s has no %q:\n%s", file, old, src)
		}
		src = strings.Replace(src, old, filled, 1)
	}
	replace("type Handlers struct{}", "type Handlers struct {\n\treadModel\n}")
	replace("return &Handlers{}, nil", "rm, err := newReadModel(ctx, deps)\n\treturn &Handlers{rm}, err")
	replace(`return errors.New("balances: Reset not implemented")`, "_, err := tx.Exec(ctx, `TRUNCATE balances`)\n\treturn err")
	queued := regexp.MustCompile(`(?m)^\tq := projection\.Queue\(tx\)\n\t_ = q //.*\n\treturn errors\.New\("balances: OnAccountOpened not implemented"\)$`)
	if !queued.MatchString(src) {
		t.Fatalf("%s: the OnAccountOpened stub does not queue through q:\n%s", file, src)
	}
	src = queued.ReplaceAllLiteralString(src, "\tq := projection.Queue(tx)\n\treturn h.open(ctx, q, env, e.Owner, e.Currency)")
	for method, body := range map[string]string{
		"OnMoneyDeposited": "return h.apply(ctx, tx, env, e.Amount)",
		"OnMoneyWithdrawn": "return h.apply(ctx, tx, env, -e.Amount)",
	} {
		stub := regexp.MustCompile(`(?s)(func \(h \*Handlers\) ` + method + `\([^\n]*\{\n).*?\n(\}\n)`)
		if !stub.MatchString(src) {
			t.Fatalf("%s has no stub for %s:\n%s", file, method, src)
		}
		src = stub.ReplaceAllString(src, "${1}\t"+body+"\n${2}")
	}
	if !strings.Contains(src, "errors.") {
		src = strings.Replace(src, "\t\"errors\"\n", "", 1)
	}
	writeFile(t, file, src)
	writeFile(t, filepath.Join(filepath.Dir(file), "readmodel.go"), readFile(t, filepath.Join("testdata", "e2e_balances.go")))
}

// TestGoldenOutputsCompile builds and vets the expected output of every golden case
// that generates code, in a module pointing at this checkout: the committed
// expectations are code that compiles against the runtime.
func TestGoldenOutputsCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds modules")
	}
	root := checkoutRoot(t)
	cases, err := filepath.Glob(filepath.Join("testdata", "*", "want"))
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden outputs: %v", err)
	}
	for _, want := range cases {
		name := filepath.Base(filepath.Dir(want))
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mod := t.TempDir()
			writeFile(t, filepath.Join(mod, "go.mod"), "module example.com/app\n\ngo 1.26\n")
			requireCheckout(t, root, mod)
			err := filepath.WalkDir(want, func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, err := filepath.Rel(want, p)
				if err != nil {
					return err
				}
				writeFile(t, filepath.Join(mod, rel), readFile(t, p))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			run(t, mod, moduleEnv(), "go", "vet", "./...")
			if check := filepath.Join("testdata", "e2e_"+name+"_check_test.go"); fileExists(check) {
				// The generated code's behaviour, without a database.
				writeFile(t, filepath.Join(mod, "check", "check_test.go"), readFile(t, check))
				run(t, mod, moduleEnv(), "go", "test", "./check")
			}
		})
	}
}
