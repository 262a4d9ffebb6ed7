package main

import (
	"context"

	"github.com/jackc/pgx/v5"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/esgen-dev/esgen/internal/pgtest"
)

// runBinary runs the built esgen with args and the environment env (on top of the
// test's) and returns stdout, stderr and the exit code.
func runBinary(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(esgenBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = t.TempDir()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func commandNames() []string {
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// The conventions every command keeps, checked on the built binary: help and -h print
// on stdout and exit 0, a mistake in the command line exits 2 with a message on
// stderr, no output shows the password of DATABASE_URL, every command is listed in
// esgen help and in the README.
func TestCLIConventions(t *testing.T) {
	t.Parallel()
	const secret = "pw-s3cret-xyz"
	env := []string{"DATABASE_URL=postgres://ann:" + secret + "@127.0.0.1:1/db?connect_timeout=1"}
	check := func(what, stdout, stderr string) {
		t.Helper()
		if strings.Contains(stdout+stderr, secret) {
			t.Errorf("%s shows the password:\n%s%s", what, stdout, stderr)
		}
	}
	list, stderr, code := runBinary(t, env, "help")
	if code != 0 || stderr != "" || !strings.Contains(list, "usage: esgen <command>") {
		t.Fatalf("esgen help: exit %d\n%s%s", code, list, stderr)
	}
	for _, args := range [][]string{{"-h"}, {"--help"}} {
		if out, _, code := runBinary(t, env, args...); code != 0 || out != list {
			t.Errorf("esgen %v: exit %d, want the list of esgen help on stdout", args, code)
		}
	}
	if out, errOut, code := runBinary(t, env); code != 2 || out != "" || !strings.Contains(errOut, "usage: esgen <command>") {
		t.Errorf("esgen without a command: exit %d, stdout %q", code, out)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range commandNames() {
		if !regexp.MustCompile(`(?m)^  ` + name + ` +\S`).MatchString(list) {
			t.Errorf("esgen help does not list %s:\n%s", name, list)
		}
		if !strings.Contains(string(readme), "| `"+name) {
			t.Errorf("README.md's table of commands does not list %s", name)
		}
		// esgen help <command> and esgen <command> -h: the same usage, on stdout, exit 0.
		help, errOut, code := runBinary(t, env, "help", name)
		check("esgen help "+name, help, errOut)
		if code != 0 || errOut != "" || !strings.HasPrefix(help, "usage: esgen "+name) {
			t.Errorf("esgen help %s: exit %d\nstdout %q\nstderr %q", name, code, help, errOut)
		}
		if name != "help" {
			out, errOut, code := runBinary(t, env, name, "-h")
			check("esgen "+name+" -h", out, errOut)
			if code != 0 || errOut != "" || out != help {
				t.Errorf("esgen %s -h: exit %d, stdout differs from esgen help %s: %q\nstderr %q", name, code, name, out, errOut)
			}
		}
		// A flag that does not exist: exit 2, a message on stderr, nothing on stdout.
		out, errOut, code := runBinary(t, env, name, "--no-such-flag")
		check("esgen "+name+" --no-such-flag", out, errOut)
		if code != 2 || out != "" || !strings.Contains(errOut, "esgen "+name+":") {
			t.Errorf("esgen %s --no-such-flag: exit %d, want 2\nstdout %q\nstderr %q", name, code, out, errOut)
		}
	}
	// Wrong arguments: exit 2.
	for _, args := range [][]string{
		{"frobnicate"}, {"help", "frobnicate"}, {"status", "a", "b"}, {"reset"}, {"rescale", "rm"}, {"rescale", "rm", "100000"},
		{"rescale", "rm", "zero"}, {"skip", "rm"}, {"skip", "rm", "--event", "not-a-uuid", "--reason", "x"},
		{"skip", "rm", "--event", "6772ca75-9c1e-4b4f-8f0e-1a2b3c4d5e6f"}, {"version", "extra"}, {"generate", "extra"}, {"migrate", "extra"},
		{"init", "extra"}, {"devdb", "extra"}, {"demo", "extra"}, {"bench", "extra"},
		{"rebuild"}, {"rebuild", "rm"}, {"rebuild", "rm", "--yes", "--interval", "0s"}, {"accept-skip", "rm"},
	} {
		out, errOut, code := runBinary(t, env, args...)
		check(strings.Join(args, " "), out, errOut)
		if code != 2 || errOut == "" {
			t.Errorf("esgen %v: exit %d, want 2 with a message\nstdout %q\nstderr %q", args, code, out, errOut)
		}
	}
	// Commands that connect: the error names the server, not the password.
	for _, args := range [][]string{{"status"}, {"rescale", "rm", "2"}, {"reset", "rm", "--yes"}, {"migrate"},
		{"skip", "rm", "--event", "6772ca75-9c1e-4b4f-8f0e-1a2b3c4d5e6f", "--reason", "x"},
		{"rebuild", "rm", "--yes", "--no-wait"}, {"accept-skip", "rm", "Shipped"}} {
		out, errOut, code := runBinary(t, env, args...)
		check(strings.Join(args, " "), out, errOut)
		if code != 1 {
			t.Errorf("esgen %v against no server: exit %d, want 1\n%s%s", args, code, out, errOut)
		}
	}
}

// esgen version and esgen --version print the module and the build's version control
// information on stdout.
func TestVersion(t *testing.T) {
	t.Parallel()
	out, errOut, code := runBinary(t, nil, "version")
	if code != 0 || errOut != "" || !regexp.MustCompile(`^esgen github.com/esgen-dev/esgen \S+.* go1\.\d+`).MatchString(out) {
		t.Fatalf("esgen version: exit %d, %q %q", code, out, errOut)
	}
	if again, _, code := runBinary(t, nil, "--version"); code != 0 || again != out {
		t.Errorf("esgen --version: exit %d, %q, want %q", code, again, out)
	}
	// Built in a checkout with version control information (not with -buildvcs=false),
	// it names the revision the toolchain recorded.
	meta, err := exec.Command("go", "version", "-m", esgenBinary(t)).Output()
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`vcs\.revision=(\w+)`).FindSubmatch(meta); m != nil {
		if !strings.Contains(out, "(revision "+string(m[1])[:12]) {
			t.Errorf("esgen version does not name the revision %s: %q", m[1], out)
		}
	}
}

// esgen rescale changes the count of a projection on purpose, and says so; esgen
// status shows the new layout.
func TestRescaleCommand(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	env := []string{"DATABASE_URL=" + url}
	if _, errOut, code := runBinary(t, env, "rescale", "nope", "2"); code != 1 || !strings.Contains(errOut, `no projection "nope"`) {
		t.Errorf("rescale of an unknown projection: exit %d, %s", code, errOut)
	}
	conn := connectTest(t, url)
	if _, err := conn.Exec(t.Context(), `INSERT INTO esgen_projections (name, partition_count, counts_used) VALUES ('rm', 2, '{2}');
		INSERT INTO esgen_checkpoints (projection, generation, partition_key, partition_count) VALUES ('rm', 1, 0, 2), ('rm', 1, 1, 2)`); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runBinary(t, env, "rescale", "rm", "3")
	if code != 0 || !strings.Contains(out, "esgen rescale: projection rm: partition count changed from 2 to 3 (generation 2)") ||
		!strings.Contains(out, "start TOTAL_PARTITIONS=3 with PARTITION_KEY=0..2") ||
		!strings.Contains(out, "esgen rescale: partition index esgen_events_partitions_3 built") {
		t.Fatalf("rescale: exit %d\n%s%s", code, out, errOut)
	}
	// The new count's index is in place, valid, before any worker of it starts.
	var valid bool
	if err := conn.QueryRow(t.Context(), `SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = 'esgen_events_partitions_3'::regclass`).Scan(&valid); err != nil || !valid {
		t.Errorf("partition index of 3 after rescale: valid %v, %v", valid, err)
	}
	if out, _, code := runBinary(t, env, "rescale", "rm", "4", "--no-partition-index"); code != 0 || strings.Contains(out, "partition index") {
		t.Errorf("rescale --no-partition-index: exit %d, %s", code, out)
	}
	if _, err := conn.Exec(t.Context(), `SELECT 'esgen_events_partitions_4'::regclass`); err == nil {
		t.Error("rescale --no-partition-index built the index")
	}
	if out, _, code := runBinary(t, env, "rescale", "rm", "3"); code != 0 || !strings.Contains(out, "partition count changed from 4 to 3") || strings.Contains(out, "index") {
		t.Errorf("rescale back to 3 (index there): exit %d, %s", code, out)
	}
	if out, _, code := runBinary(t, env, "rescale", "rm", "3"); code != 0 || !strings.Contains(out, "runs with 3 partitions already") {
		t.Errorf("rescale to the same count: exit %d, %s", code, out)
	}
	if out, _, code := runBinary(t, env, "status", "rm"); code != 0 || !strings.Contains(out, "projection rm: 3 partition(s), generation 4 (counts used: 2 → 3 → 4)") {
		t.Errorf("status after rescale: exit %d\n%s", code, out)
	}
}

func connectTest(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
