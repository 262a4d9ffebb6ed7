package pgtest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/internal/pgtest"
)

func TestPrivateServerStartsRestartsAndCleansUp(t *testing.T) {
	if _, err := pgtest.BinDir(); err != nil {
		t.Skipf("no PostgreSQL binaries: %v", err)
	}
	ctx := context.Background()
	s, err := pgtest.StartPrivate(ctx, pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := s.Dir()
	u, err := s.CreateDatabase(ctx, "probe")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("a connection survived the restart; it should have been cut")
	}
	conn, err = pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	var v int
	if err := conn.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil || v != 42 {
		t.Fatalf("data after restart: %d, %v", v, err)
	}
	conn.Close(ctx)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still exists after Stop (%v)", dir, err)
	}
}

// With neither DATABASE_URL nor binaries, the error says in one line how to get one.
func TestNoPostgresErrorSaysWhatToDo(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") == "1" {
		_, err := pgtest.Start(context.Background(), pgtest.Options{})
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(3)
		}
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=TestNoPostgresErrorSaysWhatToDo")
	cmd.Env = []string{"PGTEST_CHILD=1", "PATH=/nonexistent", "ESGEN_PG_BINDIR=/nonexistent"}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("child started a server without binaries")
	}
	msg := strings.TrimSpace(string(out))
	if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "DATABASE_URL") || !strings.Contains(msg, "apt-get install postgresql") {
		t.Fatalf("message = %q", msg)
	}
}

func TestNoPostgresErrorText(t *testing.T) {
	msg := pgtest.ErrNoPostgres.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "DATABASE_URL") || !strings.Contains(msg, "install PostgreSQL") {
		t.Fatalf("ErrNoPostgres = %q", msg)
	}
}
