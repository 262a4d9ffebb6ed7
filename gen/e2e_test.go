package gen_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
// projection: generate, psql -f the migrations, fill in the handler stubs, go build,
// go vet, append events with the typed helpers, run the generated projector as two
// processes with two partitions, and check the read model.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds a module and runs PostgreSQL")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	root := checkoutRoot(t)
	mod := t.TempDir()

	// 1. esgen init and generate, as a user would.
	if _, err := gen.Init(gen.InitOptions{Dir: mod, Module: "example.com/bank"}); err != nil {
		t.Fatalf("init: %v", err)
	}
	requireCheckout(t, root, mod)
	if _, err := gen.Generate(gen.Options{Dir: mod}); err != nil {
		t.Fatalf("generate: %v", err)
	}

	// 2. The user's side: handler bodies, the read-model table, a program that appends.
	fillHandlers(t, filepath.Join(mod, "projections", "balances", "handlers.go"))
	writeFile(t, filepath.Join(mod, "sql", "migrations", "100_balances.sql"), readFile(t, filepath.Join("testdata", "e2e_balances.sql")))
	writeFile(t, filepath.Join(mod, "cmd", "seed", "main.go"), readFile(t, filepath.Join("testdata", "e2e_seed.go")))

	// 3. go generate runs the directive init wrote; with the spec unchanged it
	// rewrites nothing.
	goEnv := moduleEnv()
	out := run(t, mod, goEnv, "go", "generate", "./...")
	if strings.Contains(out, "created") || strings.Contains(out, "updated") || !strings.Contains(out, "unchanged generated/events/events.go") {
		t.Errorf("go generate with an unchanged spec reported changes:\n%s", out)
	}
	bin := filepath.Join(mod, "bin")
	run(t, mod, goEnv, "go", "build", "-o", bin+string(filepath.Separator), "./...")
	run(t, mod, goEnv, "go", "vet", "./...")

	// 4. The migrations, applied as they are with psql.
	dbURL := pgtest.NewEmptyDatabase(t)
	psql, err := pgtest.Bin("psql")
	if err != nil {
		t.Fatal(err)
	}
	migrations, err := filepath.Glob(filepath.Join(mod, "sql", "migrations", "*.sql"))
	if err != nil || len(migrations) < 3 {
		t.Fatalf("migrations: %v %v", migrations, err)
	}
	slices.Sort(migrations)
	for _, m := range migrations {
		run(t, mod, nil, psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dbURL, "-f", m)
	}

	// 5. Events through the typed append helpers.
	dbEnv := []string{"DATABASE_URL=" + dbURL}
	run(t, mod, dbEnv, filepath.Join(bin, "seed"), "-accounts", strconv.Itoa(e2eAccounts))

	// 6. Two projector processes, one partition each.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var procs []*exec.Cmd
	var logs []*bytes.Buffer
	for key := range 2 {
		var buf bytes.Buffer
		cmd := exec.Command(filepath.Join(bin, "balances-projector"))
		cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "TOTAL_PARTITIONS=2", fmt.Sprintf("PARTITION_KEY=%d", key))
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
		if r.id != id || r.owner != "owner of "+id || r.currency != "EUR" || r.balance != wantBalance || r.events != 4 {
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

// moduleEnv lets the go command complete go.mod and go.sum from the module cache.
func moduleEnv() []string {
	return []string{"GOFLAGS=-mod=mod -buildvcs=false", "GOWORK=off", "GOTOOLCHAIN=local"}
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

// fillHandlers fills in the handler stubs the way a user edits the file: each stub's
// "not implemented" return becomes a call into testdata/e2e_balances.go, copied next
// to it as readmodel.go; the errors import goes when nothing uses it any more.
func fillHandlers(t *testing.T, file string) {
	t.Helper()
	src := readFile(t, file)
	for method, body := range map[string]string{
		"OnAccountOpened":  `return open(ctx, tx, env, e.Owner, e.Currency)`,
		"OnMoneyDeposited": `return apply(ctx, tx, env, e.Amount)`,
		"OnMoneyWithdrawn": `return apply(ctx, tx, env, -e.Amount)`,
	} {
		stub := fmt.Sprintf(`return errors.New("balances: %s not implemented")`, method)
		if !strings.Contains(src, stub) {
			t.Fatalf("%s has no stub for %s:\n%s", file, method, src)
		}
		src = strings.Replace(src, stub, body, 1)
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
			if name == "bank" {
				// The generated code's behaviour, without a database.
				writeFile(t, filepath.Join(mod, "check", "check_test.go"), readFile(t, filepath.Join("testdata", "e2e_bank_check_test.go")))
				run(t, mod, moduleEnv(), "go", "test", "./check")
			}
		})
	}
}
