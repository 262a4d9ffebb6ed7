package examples_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// caughtUp holds when the balances read model reflects every stored event: each
// account's version is the number of its events.
func caughtUp(ctx context.Context, r *runner) error {
	events, err := r.count(ctx, `SELECT count(*) FROM esgen_events`)
	if err != nil {
		return err
	}
	applied, err := r.count(ctx, `SELECT coalesce(sum(version), 0) FROM balances`)
	if err != nil {
		return err
	}
	if events == 0 || applied != events {
		return fmt.Errorf("%d events stored, %d applied", events, applied)
	}
	return nil
}

// tableShows checks the psql output of the balances query: every account acct-001 …
// acct-010 with the given balance and version.
func tableShows(balance, version int) check {
	return func(ctx context.Context, r *runner) error {
		out := r.lastOutput()
		for i := 1; i <= 10; i++ {
			re := regexp.MustCompile(fmt.Sprintf(`(?m)^\s*acct-%03d\s*\|\s*owner %d\s*\|\s*%d\s*\|\s*%d\s*$`, i, i, balance, version))
			if !re.MatchString(out) {
				return fatalf("psql shows no row for acct-%03d with balance %d at version %d:\n%s", i, balance, version, out)
			}
		}
		if !strings.Contains(out, "(10 rows)") {
			return fatalf("psql does not show 10 rows:\n%s", out)
		}
		return nil
	}
}

func TestBasic(t *testing.T) {
	t.Parallel()
	before := treeHashes(t, "basic")
	r := runExample(t, "basic", map[string]check{
		"caught-up":    caughtUp,
		"first-table":  tableShows(45, 7),
		"second-table": tableShows(90, 13),
	})
	if t.Failed() {
		return
	}
	log := r.logOf("projector")
	if len(findLogs(log, "partition started", "projection", "balances", "partition", "0", "total_partitions", "1")) != 1 ||
		len(findLogs(log, "partition stopped", "partition", "0", "events_processed", "130")) != 1 ||
		len(findLogs(log, "projector stopped")) != 1 {
		t.Errorf("the projector's log does not show partition 0 of 1 starting, then stopping after 130 events:\n%s", log)
	}
	// The handlers log with the logger NewHandlers got from the process.
	if opened := findLogs(log, "account opened", "projection", "balances", "partitions", "[0]"); len(opened) != 10 {
		t.Errorf("the projector logs %d accounts opened through the handlers' logger, want 10:\n%s", len(opened), log)
	}
	// The README's go generate changed no file.
	after := treeHashes(t, "basic")
	for path, h := range before {
		if after[path] != h {
			t.Errorf("go generate changed %s", path)
		}
	}
	for path := range after {
		if _, ok := before[path]; !ok {
			t.Errorf("go generate created %s", path)
		}
	}
}

// treeHashes returns the SHA-256 of every file under dir but bin/.
func treeHashes(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	for path, b := range exampleFiles(t, dir) {
		out[path] = sha256.Sum256(b)
	}
	return out
}

// TestBasicWithDevDB follows the basic README with the database that its (otherwise
// skipped) esgen devdb command gives, run as written, instead of the test server's.
func TestBasicWithDevDB(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs esgen devdb and the example's programs; skipped with -short")
	}
	t.Parallel()
	steps, err := parseReadme(filepath.Join("basic", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var code string
	for _, s := range steps {
		if s.kind == "skip" && strings.Contains(s.code, "esgen devdb") {
			code = strings.TrimSpace(stripComments(s.code))
		}
	}
	if code == "" {
		t.Fatal("basic/README.md shows no esgen devdb command")
	}
	warmUp(t)
	cmd := exec.Command("bash", "-c", "exec "+code)
	cmd.Dir = "basic"
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr := &lockedFile{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	lines := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
		_, _ = io.Copy(io.Discard, stdout)
		done <- cmd.Wait()
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s printed nothing in 2 minutes:\n%s", code, stderr.String())
	}
	m := regexp.MustCompile(`^export DATABASE_URL='([^']+)'\n$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("%s printed %q, not an export line:\n%s", code, line, stderr.String())
	}

	r := runExampleOn(t, "basic", m[1], map[string]check{
		"caught-up":    caughtUp,
		"first-table":  tableShows(45, 7),
		"second-table": tableShows(90, 13),
	})
	if t.Failed() {
		return
	}
	if len(findLogs(r.logOf("projector"), "partition stopped", "partition", "0", "events_processed", "130")) != 1 {
		t.Errorf("the projector does not say it processed 130 events:\n%s", r.logOf("projector"))
	}
	r.pool.Close()

	// Ctrl+C in devdb's terminal stops the server and removes its directory.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("esgen devdb still runs 30s after Ctrl+C:\n%s", stderr.String())
	}
	dir := regexp.MustCompile(`running in (\S+) `).FindStringSubmatch(stderr.String())
	if dir == nil || !strings.Contains(stderr.String(), "removed "+dir[1]) {
		t.Fatalf("esgen devdb does not say it removed its directory:\n%s", stderr.String())
	}
	if _, err := os.Stat(dir[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there after Ctrl+C (%v)", dir[1], err)
	}
}
