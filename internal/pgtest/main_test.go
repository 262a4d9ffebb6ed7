package pgtest_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/esgen-dev/esgen/internal/pgtest"
)

// mainChildEnv makes this test binary run its tests through pgtest.Main, as the
// packages that need PostgreSQL do.
const mainChildEnv = "PGTEST_MAIN_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(mainChildEnv) == "1" {
		os.Exit(pgtest.Main(m))
	}
	os.Exit(m.Run())
}

// runMainChild runs this test binary through pgtest.Main with -test.v and the given
// settings, DATABASE_URL and ESGEN_PG_BINDIR removed from the environment first.
func runMainChild(t *testing.T, run string, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.v", "-test.run="+run)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "ESGEN_PG_BINDIR=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, append([]string{mainChildEnv + "=1"}, env...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Without a server to use, a test binary prints one line saying how to get one and
// fails before running any test.
func TestMainWithoutPostgresPrintsOneLine(t *testing.T) {
	if os.Getenv(mainChildEnv) == "1" {
		t.Fatal("pgtest.Main ran the tests without a server to use")
	}
	// An empty ESGEN_PG_BINDIR is a machine without PostgreSQL's binaries.
	out, err := runMainChild(t, ".", "ESGEN_PG_BINDIR="+t.TempDir())
	if err == nil {
		t.Fatalf("the test binary succeeded without PostgreSQL:\n%s", out)
	}
	msg := strings.TrimSuffix(out, "\n")
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "DATABASE_URL") || !strings.Contains(msg, "apt-get install postgresql") {
		t.Fatalf("want one line naming DATABASE_URL and apt-get install postgresql, got:\n%s", out)
	}

	// A DATABASE_URL that does not answer is reported the same way.
	out, err = runMainChild(t, ".", "DATABASE_URL=postgres://esgen@127.0.0.1:1/esgen?connect_timeout=5")
	if err == nil {
		t.Fatalf("the test binary succeeded with a DATABASE_URL that does not answer:\n%s", out)
	}
	msg = strings.TrimSuffix(out, "\n")
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "DATABASE_URL") {
		t.Fatalf("want one line naming DATABASE_URL, got:\n%s", out)
	}
}

// With PostgreSQL's binaries, pgtest.Main runs the tests (and starts no server for
// tests that do not ask for one).
func TestMainWithPostgresRunsTheTests(t *testing.T) {
	if _, err := pgtest.BinDir(); err != nil {
		t.Skipf("no PostgreSQL binaries: %v", err)
	}
	out, err := runMainChild(t, "^TestNoPostgresErrorText$")
	if err != nil || !strings.Contains(out, "--- PASS: TestNoPostgresErrorText") {
		t.Fatalf("the test binary did not run the test: %v\n%s", err, out)
	}
}
