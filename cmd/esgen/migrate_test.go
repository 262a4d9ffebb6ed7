package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/esgen-dev/esgen/internal/pgtest"
	"github.com/esgen-dev/esgen/migrate"
)

func runArgs(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

func TestMigrateCommand(t *testing.T) {
	url := pgtest.NewEmptyDatabase(t)

	code, out, errOut := runArgs("migrate", "--dry-run", "--database", url)
	if code != 0 || !strings.Contains(out, "-- 001_event_store.sql") || !strings.Contains(out, "CREATE TABLE IF NOT EXISTS esgen_events") {
		t.Fatalf("dry run: code %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runArgs("migrate", "--database", url)
	if code != 0 || !strings.Contains(out, "applied 001_event_store.sql") || !strings.Contains(out, "applied 002_projections.sql") {
		t.Fatalf("migrate: code %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runArgs("migrate", "--database", url)
	if code != 0 || strings.TrimSpace(out) != "esgen migrate: up to date" {
		t.Fatalf("second migrate: code %d, %q", code, out)
	}
	code, out, _ = runArgs("migrate", "--dry-run", "--database", url)
	if code != 0 || strings.TrimSpace(out) != "" {
		t.Fatalf("dry run when up to date: code %d, %q", code, out)
	}
}

func TestMigrateWithoutDatabaseSaysWhatToDo(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	code, _, errOut := runArgs("migrate")
	if code != 2 || !strings.Contains(errOut, "set DATABASE_URL or pass --database=") {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
	// Without a database, --dry-run prints every migration.
	code, out, _ := runArgs("migrate", "--dry-run")
	if code != 0 || !strings.Contains(out, "-- 002_projections.sql") {
		t.Fatalf("dry run without database: code %d\n%s", code, out)
	}
}

// esgen migrate applies the module's own files of the spec's migrations folder after
// esgen's; --dry-run shows both.
func TestMigrateAppliesTheModulesMigrations(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "esgen.yaml"), "version: 1\naggregates:\n  A: {events: {Done: {}}}\noutput: {migrations: db/schema}\n")
	writeTestFile(t, filepath.Join(dir, "db", "schema", "100_balances.sql"), "CREATE TABLE IF NOT EXISTS balances (id text PRIMARY KEY);\n")
	url := pgtest.NewEmptyDatabase(t)

	esgens := migrate.All()
	lastEsgen := esgens[len(esgens)-1].Name
	code, out, errOut := runArgs("migrate", "--dry-run", "-C", dir)
	if code != 0 || !strings.Contains(out, "-- 001_event_store.sql") || !strings.Contains(out, "-- 100_balances.sql\nCREATE TABLE IF NOT EXISTS balances") ||
		strings.Index(out, "-- 100_balances.sql") < strings.Index(out, "-- "+lastEsgen) {
		t.Fatalf("dry run: code %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runArgs("migrate", "--database", url, "-C", dir)
	if code != 0 || strings.Count(out, "applied ") != len(esgens)+1 || !strings.HasSuffix(out, "applied "+lastEsgen+"\nesgen migrate: applied 100_balances.sql\n") {
		t.Fatalf("migrate: code %d\n%s\n%s", code, out, errOut)
	}
	writeTestFile(t, filepath.Join(dir, "db", "schema", "101_audit.sql"), "CREATE TABLE IF NOT EXISTS audit (id text);\n")
	code, out, _ = runArgs("migrate", "--dry-run", "--database", url, "-C", dir)
	if code != 0 || out != "-- 101_audit.sql\nCREATE TABLE IF NOT EXISTS audit (id text);\n\n" {
		t.Fatalf("dry run with one pending: code %d, %q", code, out)
	}
	code, out, _ = runArgs("migrate", "--database", url, "-C", dir)
	if code != 0 || out != "esgen migrate: applied 101_audit.sql\n" {
		t.Fatalf("second migrate: code %d, %q", code, out)
	}
	// A file numbered like esgen's is refused before anything is applied.
	writeTestFile(t, filepath.Join(dir, "db", "schema", "003_mine.sql"), "CREATE TABLE mine (id int);\n")
	code, _, errOut = runArgs("migrate", "--database", url, "-C", dir)
	if code != 1 || !strings.Contains(errOut, "db/schema/003_mine.sql: numbers below 100 are esgen's") {
		t.Fatalf("esgen's number: code %d, %q", code, errOut)
	}
}

func writeTestFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
