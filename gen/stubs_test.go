package gen

import (
	"go/format"
	"path/filepath"
	"strings"
	"testing"
)

func TestInsertImports(t *testing.T) {
	for _, c := range []struct {
		name, src string
		add       []importSpec
		want      string
	}{{
		name: "sorted into both groups",
		src:  "package p\n\nimport (\n\t\"context\"\n\t\"fmt\"\n\n\t\"example.com/a\"\n\tev \"example.com/events\"\n)\n\nvar x = 1\n",
		add:  []importSpec{{"errors", "errors"}, {"github.com/jackc/pgx/v5", "pgx"}, {"example.com/b", "b"}},
		want: "package p\n\nimport (\n\t\"context\"\n\t\"errors\"\n\t\"fmt\"\n\n\t\"example.com/a\"\n\t\"example.com/b\"\n\tev \"example.com/events\"\n\t\"github.com/jackc/pgx/v5\"\n)\n\nvar x = 1\n",
	}, {
		name: "new groups",
		src:  "package p\n\nimport (\n\t\"example.com/a\" // the a package\n)\n",
		add:  []importSpec{{"errors", "errors"}},
		want: "package p\n\nimport (\n\t\"errors\"\n\n\t\"example.com/a\" // the a package\n)\n",
	}, {
		name: "a standard group only",
		src:  "package p\n\nimport (\n\t\"context\"\n)\n",
		add:  []importSpec{{"example.com/events", "events2"}},
		want: "package p\n\nimport (\n\t\"context\"\n\n\tevents2 \"example.com/events\"\n)\n",
	}, {
		name: "no import block",
		src:  "// Package p.\npackage p\n\nimport \"fmt\"\n\nvar x = fmt.Sprint()\n",
		add:  []importSpec{{"errors", "errors"}},
		want: "// Package p.\npackage p\n\nimport \"fmt\"\n\nimport (\n\t\"errors\"\n)\n\nvar x = fmt.Sprint()\n",
	}, {
		name: "no imports",
		src:  "package p\n\nvar x = 1\n",
		add:  []importSpec{{"errors", "errors"}},
		want: "package p\n\nimport (\n\t\"errors\"\n)\n\nvar x = 1\n",
	}} {
		got, err := insertImports("p.go", []byte(c.src), c.add)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
		if formatted, err := format.Source(got); err != nil || string(formatted) != string(got) {
			t.Errorf("%s: not gofmt-clean (%v):\n%s", c.name, err, got)
		}
	}
}

// An appended stub brings the imports it needs: the user dropped errors and
// projection when filling in the first stub; the file's other bytes stay as they were.
func TestAppendedStubsAddTheImportsTheyNeed(t *testing.T) {
	dir := bankModule(t, "Account.AccountOpened")
	generate(t, dir)
	stubs := filepath.Join(dir, "projections", "balances", "handlers.go")
	src := string(readFile(t, stubs))
	src = strings.Replace(src, "\t\"errors\"\n", "", 1)
	src = strings.Replace(src, "\t\"github.com/esgen-dev/esgen/projection\"\n", "", 1)
	i := strings.Index(src, "func (h *Handlers) OnAccountOpened(")
	j := strings.Index(src[i:], "\treturn errors.New(") + i
	k := strings.Index(src[j:], "\n}") + j
	if i < 0 || j < i || k < j || !strings.Contains(src[i:j], "q := projection.Queue(tx)") {
		t.Fatalf("the OnAccountOpened stub does not queue through q:\n%s", src)
	}
	src = src[:i] + "func (h *Handlers) OnAccountOpened(ctx context.Context, tx pgx.Tx, env *eventstore.Event, e events.AccountOpened) error {\n\treturn nil" + src[k:]
	writeFile(t, stubs, src)

	writeFile(t, filepath.Join(dir, "esgen.yaml"), strings.Replace(bankSpec, "%s", "Account.AccountOpened, Account.MoneyWithdrawn", 1))
	res := generate(t, dir)
	if a := actions(res)["projections/balances/handlers.go"]; a != Appended {
		t.Fatalf("handlers.go: %s, want appended", a)
	}
	got := string(readFile(t, stubs))
	if !strings.Contains(got, "import (\n\t\"context\"\n\t\"errors\"\n\n") {
		t.Errorf("errors is not imported again in the standard group:\n%s", got)
	}
	if !strings.Contains(got, "\t\"github.com/esgen-dev/esgen/eventstore\"\n\t\"github.com/esgen-dev/esgen/projection\"\n\t\"github.com/esgen-dev/esgen/projector\"\n") {
		t.Errorf("projection is not imported again at its place:\n%s", got)
	}
	without := strings.Replace(got, "\t\"errors\"\n", "", 1)
	without = strings.Replace(without, "\t\"github.com/esgen-dev/esgen/projection\"\n", "", 1)
	if !strings.HasPrefix(without, src) {
		t.Errorf("besides the imports, the file's bytes changed:\n%s", got)
	}
	if !strings.Contains(got, "q := projection.Queue(tx)") || !strings.Contains(got, `return errors.New("balances: OnMoneyWithdrawn not implemented")`) {
		t.Errorf("no stub for OnMoneyWithdrawn that queues through q:\n%s", got)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings: %q", res.Warnings)
	}
}

// A handler package written before the constructor existed keeps its &Handlers{}
// main; one that declares NewHandlers gets a main that calls it.
func TestMainCallsTheConstructorWhenDeclared(t *testing.T) {
	dir := bankModule(t, "Account.AccountOpened")
	generate(t, dir)
	main := filepath.Join(dir, "cmd", "balances-projector", "main.go")
	if got := string(readFile(t, main)); !strings.Contains(got, "return balances.NewHandlers(ctx, deps)") {
		t.Fatalf("a new projection's main does not call NewHandlers:\n%s", got)
	}
	stubs := filepath.Join(dir, "projections", "balances", "handlers.go")
	src := string(readFile(t, stubs))
	i, j := strings.Index(src, "// NewHandlers returns"), strings.Index(src, "// Reset clears")
	old := strings.Replace(src[:i]+src[j:], "\t\"github.com/esgen-dev/esgen/projector\"\n", "", 1)
	writeFile(t, stubs, old)
	generate(t, dir)
	if got := string(readFile(t, main)); !strings.Contains(got, "projector.Main(balancesgen.New(&balances.Handlers{}))") || strings.Contains(got, "NewHandlers") {
		t.Errorf("without NewHandlers the main should build &Handlers{}:\n%s", got)
	}
	if string(readFile(t, stubs)) != old {
		t.Error("generate changed the handler file")
	}
	// The constructor in a file of its own counts too.
	writeFile(t, filepath.Join(dir, "projections", "balances", "new.go"), "package balances\n\nfunc NewHandlers() {}\n")
	generate(t, dir)
	if got := string(readFile(t, main)); !strings.Contains(got, "balances.NewHandlers(ctx, deps)") {
		t.Errorf("NewHandlers in new.go is not called:\n%s", got)
	}
}

// A new projection gets a read-model migration numbered after the module's own ones,
// once; with sqlc: true also a query file and sqlc.yaml.
func TestNewProjectionGetsReadModelFiles(t *testing.T) {
	dir := bankModule(t, "Account.AccountOpened")
	writeFile(t, filepath.Join(dir, "sql", "migrations", "104_accounts.sql"), "CREATE TABLE IF NOT EXISTS accounts (id text);\n")
	res := generate(t, dir)
	if a := actions(res)["sql/migrations/105_balances.sql"]; a != Created {
		t.Fatalf("105_balances.sql: %q, want created (files: %v)", a, res.Files)
	}
	if res.SqlcConfig != "" {
		t.Errorf("SqlcConfig = %q without sqlc: true", res.SqlcConfig)
	}
	migration := filepath.Join(dir, "sql", "migrations", "105_balances.sql")
	if got := string(readFile(t, migration)); !strings.Contains(got, "CREATE TABLE IF NOT EXISTS balances (") {
		t.Errorf("105_balances.sql:\n%s", got)
	}
	writeFile(t, migration, "CREATE TABLE IF NOT EXISTS balances (id text, amount bigint);\n")

	spec := strings.Replace(bankSpec, "%s", "Account.AccountOpened", 1) +
		"  ledger:\n    handles: [Account.MoneyDeposited]\n  order:\n    handles: [Account.MoneyDeposited]\nsqlc: true\n"
	writeFile(t, filepath.Join(dir, "esgen.yaml"), spec)
	res = generate(t, dir)
	got := actions(res)
	for _, f := range []string{"sql/migrations/106_ledger.sql", "sql/migrations/107_order.sql", "sql/queries/ledger.sql", "sql/queries/order.sql", "sqlc.yaml"} {
		if got[f] != Created {
			t.Errorf("%s: %q, want created", f, got[f])
		}
	}
	if _, ok := got["sql/queries/balances.sql"]; ok {
		t.Error("a query file was written for balances, which is not new")
	}
	if res.SqlcConfig != filepath.Join(dir, "sqlc.yaml") {
		t.Errorf("SqlcConfig = %q", res.SqlcConfig)
	}
	if s := string(readFile(t, filepath.Join(dir, "sql", "queries", "order.sql"))); !strings.Contains(s, "-- name: SaveOrder :exec\n") ||
		!strings.Contains(s, "INSERT INTO order_model (aggregate_id, version)") {
		t.Errorf("order.sql (order is reserved in SQL):\n%s", s)
	}
	if s := string(readFile(t, filepath.Join(dir, "projections", "ledger", "handlers.go"))); !strings.Contains(s, "readmodel.New(projection.Queue(tx)).SaveLedger(ctx,") {
		t.Errorf("the ledger handlers do not show the query:\n%s", s)
	}
	if string(readFile(t, migration)) != "CREATE TABLE IF NOT EXISTS balances (id text, amount bigint);\n" {
		t.Error("the user's migration changed")
	}
	res = generate(t, dir)
	for _, f := range res.Files {
		if f.Action != Unchanged && f.Action != Kept {
			t.Errorf("third run: %s %s", f.Path, f.Action)
		}
	}
}
