package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/internal/pgtest"
)

// lockedBuffer is a bytes.Buffer safe for a writer and a reader in two goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var exportLine = regexp.MustCompile(`^export DATABASE_URL='([^']+)'\n$`)

func TestDevDBStartsServesAndRemovesEverything(t *testing.T) {
	if _, err := pgtest.BinDir(); err != nil {
		t.Skipf("needs PostgreSQL's server binaries: %v", err)
	}
	t.Setenv("DATABASE_URL", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr lockedBuffer
	done := make(chan error, 1)
	go func() { done <- runDevDB(ctx, []string{"-name", "shop_dev"}, &stdout, &stderr) }()

	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(stdout.String(), "\n") {
		select {
		case err := <-done:
			t.Fatalf("devdb ended before printing the URL: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no URL after a minute; stderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	m := exportLine.FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("stdout is not one export line: %q", stdout.String())
	}
	url := m[1]
	dirMatch := regexp.MustCompile(`running in (\S+) `).FindStringSubmatch(stderr.String())
	if dirMatch == nil {
		t.Fatalf("stderr does not name the server's directory:\n%s", stderr.String())
	}
	dir := dirMatch[1]

	// The line works in a shell, and the database is there and empty.
	sh := exec.Command("bash", "-c", stdout.String()+`psql "$DATABASE_URL" -Atc 'SELECT current_database()'`)
	if out, err := sh.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "shop_dev" {
		t.Errorf("psql through the export line: %v, %q", err, out)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	conn, err := pgx.Connect(cctx, url)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	var tables int
	if err := conn.QueryRow(cctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	conn.Close(cctx)
	if tables != 0 {
		t.Errorf("the new database has %d tables; devdb must apply nothing", tables)
	}
	select {
	case err := <-done:
		t.Fatalf("devdb returned while it should keep running: %v", err)
	case <-time.After(100 * time.Millisecond):
	}

	cancel() // Ctrl+C
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("devdb after Ctrl+C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("devdb did not stop within 30s of Ctrl+C")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there after devdb stopped (%v)", dir, err)
	}
	if !strings.Contains(stderr.String(), "removed "+dir) {
		t.Errorf("stderr does not say the directory was removed:\n%s", stderr.String())
	}
	cctx2, ccancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel2()
	if conn, err := pgx.Connect(cctx2, url); err == nil {
		conn.Close(cctx2)
		t.Error("the server still accepts connections after devdb stopped")
	}
}

// TestDevDBProcessStopsOnSIGTERM runs the esgen binary as a user would and stops it
// with SIGTERM: it exits 0 and leaves no server and no directory behind.
func TestDevDBProcessStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds esgen; skipped with -short")
	}
	if _, err := pgtest.BinDir(); err != nil {
		t.Skipf("needs PostgreSQL's server binaries: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "esgen")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "devdb")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the export line: %v\n%s", err, stderr.String())
	}
	m := exportLine.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("first line on stdout: %q", line)
	}
	var dirMatch []string
	for i := 0; dirMatch == nil && i < 100; i++ { // stderr is copied by another goroutine
		dirMatch = regexp.MustCompile(`running in (\S+) `).FindStringSubmatch(stderr.String())
		time.Sleep(20 * time.Millisecond)
	}
	if dirMatch == nil {
		t.Fatalf("stderr does not name the server's directory:\n%s", stderr.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, m[1])
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	conn.Close(ctx)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("esgen devdb after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("esgen devdb still runs 30s after SIGTERM\n%s", stderr.String())
	}
	if _, err := os.Stat(dirMatch[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there (%v)", dirMatch[1], err)
	}
	if conn, err := pgx.Connect(ctx, m[1]); err == nil {
		conn.Close(ctx)
		t.Error("the server still accepts connections")
	}
}

func TestDevDBUsesDatabaseURL(t *testing.T) {
	dbURL := pgtest.NewEmptyDatabase(t)
	t.Setenv("DATABASE_URL", dbURL)
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := runDevDB(ctx, nil, &stdout, &stderr); err != nil {
		t.Fatalf("devdb: %v\n%s", err, stderr.String())
	}
	if got, want := stdout.String(), "export DATABASE_URL='"+dbURL+"'\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}

	// A URL with a password: it is not printed (the shell has it already).
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, dbURL); err == nil {
		u.User = url.UserPassword(u.User.Username(), "pw-s3cret")
		t.Setenv("DATABASE_URL", u.String())
		stdout.Reset()
		stderr.Reset()
		if err := runDevDB(ctx, nil, &stdout, &stderr); err != nil {
			t.Fatalf("devdb with a password in DATABASE_URL: %v", err)
		}
		if stdout.Len() != 0 || strings.Contains(stderr.String(), "pw-s3cret") || !strings.Contains(stderr.String(), "xxxxx") {
			t.Errorf("devdb with a password: stdout %q, stderr %q", stdout.String(), stderr.String())
		}
	}

	t.Setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	stdout.Reset()
	err = runDevDB(ctx, nil, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "does not answer") || stdout.Len() != 0 {
		t.Errorf("with a dead DATABASE_URL: err = %v, stdout = %q", err, stdout.String())
	}
}

func TestDevDBRejectsBadArguments(t *testing.T) {
	for _, args := range [][]string{{"-name", "Bad-Name"}, {"extra"}} {
		var stdout, stderr bytes.Buffer
		err := runDevDB(context.Background(), args, &stdout, &stderr)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("devdb %v: err = %v, want a usage error", args, err)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u@h:1/db?sslmode=disable&x=1": `'postgres://u@h:1/db?sslmode=disable&x=1'`,
		"it's": `'it'\''s'`,
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
		out, err := exec.Command("bash", "-c", "printf %s "+shellQuote(in)).Output()
		if err != nil || string(out) != in {
			t.Errorf("bash reads %s as %q (%v), want %q", shellQuote(in), out, err, in)
		}
	}
}
