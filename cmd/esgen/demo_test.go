package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/esgen-dev/esgen/internal/demo"
	"github.com/esgen-dev/esgen/internal/pgtest"
)

var serverDirLine = regexp.MustCompile(`server in (\S+), removed at exit`)

// demoCommand runs the built esgen demo with a throw-away server (DATABASE_URL unset).
func demoCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	if _, err := pgtest.BinDir(); err != nil {
		t.Skipf("the demo's throw-away server needs PostgreSQL binaries: %v", err)
	}
	cmd := exec.Command(esgenBinary(t), append([]string{"demo"}, args...)...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	return cmd
}

// assertNothingLeft checks that the server folder is gone and no process runs from it.
func assertNothingLeft(t *testing.T, output string) {
	t.Helper()
	m := serverDirLine.FindStringSubmatch(output)
	if m == nil {
		t.Fatalf("output does not name the server folder:\n%s", output)
	}
	dir := m[1]
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after the demo (%v)", dir, err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(dir)) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			t.Errorf("process %d still runs from %s: %q", pid, dir, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
}

func checkDemoOutput(t *testing.T, out string) {
	t.Helper()
	for _, want := range []string{
		"partition started", "[worker 0]", "[worker 3]", "demo handlers ready", "progress:", "writers done",
		"partition 3:", "verification", "workers: 4 of 4 stopped cleanly on SIGTERM",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Contains(out, "FAILED") {
		t.Errorf("a verification failed")
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

func TestDemoRunsAndLeavesNothingBehind(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and worker processes")
	}
	cmd := demoCommand(t, "--accounts=100", "--events=1500")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("esgen demo: %v\n%s", err, out)
	}
	checkDemoOutput(t, string(out))
	assertNothingLeft(t, string(out))
}

// As root the demo runs its server as an unprivileged user; as a normal user it runs
// everything as that user. Both must work.
func TestDemoRunsAsNormalUser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and worker processes")
	}
	if os.Geteuid() != 0 {
		t.Skip("already running as a normal user: TestDemoRunsAndLeavesNothingBehind covers it")
	}
	// The projector is built as this user: nobody has no Go caches to build it with.
	dir, err := os.MkdirTemp("", "esgen-demo-projector-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	projector, err := demo.BuildProjector(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	cmd := demoCommand(t, "--accounts=100", "--events=1500", "--projector="+projector)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Dir = os.TempDir()
	cmd.Env = append(cmd.Env, "HOME="+os.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("esgen demo as nobody: %v\n%s", err, out)
	}
	checkDemoOutput(t, string(out))
	assertNothingLeft(t, string(out))
}

// Ctrl+C in the middle stops the writers, the workers and the server, and removes the
// server's files.
func TestDemoInterruptedLeavesNothingBehind(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and worker processes")
	}
	cmd := demoCommand(t, "--accounts=200", "--events=200000", "--timeout=5m")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	interrupted := false
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if !interrupted && strings.Contains(line, "progress:") && !strings.Contains(line, " 0 handled") {
			_ = cmd.Process.Signal(syscall.SIGINT)
			interrupted = true
		}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("the demo did not stop within a minute of SIGINT:\n%s", out.String())
	}
	if !interrupted {
		t.Fatalf("no progress line to interrupt at:\n%s", out.String())
	}
	if err == nil {
		t.Fatalf("an interrupted demo exited 0:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "interrupted") {
		t.Errorf("output does not say it was interrupted:\n%s", out.String())
	}
	assertNothingLeft(t, out.String())
}
