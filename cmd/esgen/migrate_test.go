package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/esgen-dev/esgen/internal/pgtest"
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
