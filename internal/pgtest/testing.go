package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/esgen-dev/esgen/migrate"
)

var (
	sharedMu  sync.Mutex
	shared    *Server
	sharedErr error
)

// Main runs a package's tests with one server for the whole test binary (DATABASE_URL
// or a private cluster, started on first use) and stops it afterwards. Use it from
// TestMain: func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }.
//
// Before any test runs it checks that there is a server to use: DATABASE_URL answers,
// or PostgreSQL's server binaries are installed. If not, it prints one line saying
// how to get one and returns 1 without running the tests, so that `go test ./...`
// says it once per package instead of once per test.
func Main(m *testing.M) int {
	if err := Available(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, oneLine(err))
		return 1
	}
	code := m.Run()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		shared = nil
	}
	return code
}

// Available reports whether tests can get a server: DATABASE_URL, when set, must
// answer; otherwise PostgreSQL's server binaries must be found (see [BinDir]). It
// starts nothing.
func Available(ctx context.Context) error {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		_, err := External(ctx, u)
		return err
	}
	if _, err := BinDir(); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}

// oneLine joins the lines of an error's message.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// WaitFor polls cond until it returns true, and fails the test when timeout passes
// first. Check everything a commit-safe read returns this way (eventstore.ReadAll, a
// projection's progress, status head and lag): such a read waits behind every
// transaction with an id on the whole server, and other tests on the same server hold
// such transactions open, for a moment or for as long as they like.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Shared returns the test binary's server, starting it on first use. Without
// DATABASE_URL and PostgreSQL binaries the test fails with a message saying how to get
// one.
func Shared(t testing.TB) *Server {
	t.Helper()
	s, err := SharedServer()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return s
}

// SharedServer is Shared for code without a testing.TB, such as runnable examples.
// [Main] stops the server.
func SharedServer() (*Server, error) {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		shared, sharedErr = Start(ctx, Options{})
	}
	return shared, sharedErr
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9_]+`)

// dbName makes a unique, readable database name from a test name.
func dbName(t testing.TB) string {
	base := unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(base) > 40 {
		base = base[:40]
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "esgen_t_" + base + "_" + hex.EncodeToString(b[:])
}

// NewEmptyDatabase creates a database for one test on the shared server and drops it
// when the test ends. It returns the database's URL.
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	return newDatabase(t, Shared(t))
}

func newDatabase(t testing.TB, s *Server) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := dbName(t)
	u, err := s.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.DropDatabase(ctx, name); err != nil {
			t.Logf("pgtest: %v", err)
		}
	})
	return u
}

// NewDatabase is NewEmptyDatabase with esgen's migrations applied.
func NewDatabase(t testing.TB) string {
	t.Helper()
	u := NewEmptyDatabase(t)
	Migrate(t, u)
	return u
}

// NewDatabaseOn creates a migrated database for one test on the given server.
func NewDatabaseOn(t testing.TB, s *Server) string {
	t.Helper()
	u := newDatabase(t, s)
	Migrate(t, u)
	return u
}

// Migrate applies esgen's migrations to the database at url.
func Migrate(t testing.TB, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := migrate.Up(ctx, conn, migrate.All()); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}
