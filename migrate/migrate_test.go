package migrate_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen"
	"github.com/esgen-dev/esgen/internal/pgtest"
	"github.com/esgen-dev/esgen/migrate"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestLoadChecksNames(t *testing.T) {
	ok := fstest.MapFS{
		"m/001_a.sql": {Data: []byte("SELECT 1;")},
		"m/002_b.sql": {Data: []byte("SELECT 2;")},
	}
	ms, err := migrate.Load(ok, "m")
	if err != nil || len(ms) != 2 || ms[1].Version != 2 || ms[1].Name != "002_b.sql" {
		t.Fatalf("Load = %+v, %v", ms, err)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"gap":       {"m/001_a.sql": {}, "m/003_c.sql": {}},
		"duplicate": {"m/001_a.sql": {}, "m/001_b.sql": {}},
		"bad name":  {"m/first.sql": {}},
	} {
		if _, err := migrate.Load(fsys, "m"); err == nil {
			t.Errorf("%s: Load succeeded, want an error", name)
		}
	}
	if len(migrate.All()) < 2 {
		t.Fatalf("embedded migrations: %d", len(migrate.All()))
	}
}

func TestUpRecordsVersionsAndIsIdempotent(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewEmptyDatabase(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	done, err := migrate.Up(ctx, conn, migrate.All())
	if err != nil || len(done) != len(migrate.All()) {
		t.Fatalf("first Up applied %d (%v), want all %d", len(done), err, len(migrate.All()))
	}
	done, err = migrate.Up(ctx, conn, migrate.All())
	if err != nil || len(done) != 0 {
		t.Fatalf("second Up applied %d (%v), want 0", len(done), err)
	}
	applied, err := migrate.Applied(ctx, conn)
	if err != nil || len(applied) != len(migrate.All()) {
		t.Fatalf("Applied = %v, %v", applied, err)
	}
	var tables int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename IN ('esgen_events','esgen_aggregate_heads','esgen_checkpoints')`).Scan(&tables); err != nil || tables != 3 {
		t.Fatalf("tables = %d, %v", tables, err)
	}
}

func TestFailedMigrationLeavesDatabaseUnchanged(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewEmptyDatabase(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	bad := append(migrate.All(), migrate.Migration{Version: len(migrate.All()) + 1, Name: "999_bad.sql", SQL: "CREATE TABLE x (; "})
	if _, err := migrate.Up(ctx, conn, bad); err == nil || !strings.Contains(err.Error(), "999_bad.sql") {
		t.Fatalf("err = %v, want one naming 999_bad.sql", err)
	}
	applied, err := migrate.Applied(ctx, conn)
	if err != nil || len(applied) != 0 {
		t.Fatalf("after a failed Up: applied = %v (%v), want none", applied, err)
	}
}

// The files apply with psql as they are, twice, and give the same schema as Up.
func TestMigrationFilesApplyWithPsqlTwice(t *testing.T) {
	psql, err := pgtest.Bin("psql")
	if err != nil {
		t.Skipf("no psql: %v", err)
	}
	url := pgtest.NewEmptyDatabase(t)
	entries, err := esgen.Migrations.ReadDir("sql/migrations")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for round := 1; round <= 2; round++ {
		for _, e := range entries {
			body, _ := esgen.Migrations.ReadFile("sql/migrations/" + e.Name())
			path := filepath.Join(dir, e.Name())
			if err := os.WriteFile(path, body, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", path).CombinedOutput()
			if err != nil {
				t.Fatalf("round %d: psql -f %s: %v\n%s", round, e.Name(), err, out)
			}
		}
	}
	// esgen migrate on top of a psql-migrated database succeeds too.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := migrate.Up(ctx, conn, migrate.All()); err != nil {
		t.Fatalf("Up after psql: %v", err)
	}
}
