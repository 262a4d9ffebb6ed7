// Package pgtest provides real PostgreSQL servers for esgen's tests, demo and benchmarks.
//
// [Start] uses DATABASE_URL when it is set. Otherwise it starts a throw-away cluster from
// the PostgreSQL binaries on the machine (PATH first, then /usr/lib/postgresql/*/bin,
// newest version first): initdb into a temporary directory, then postgres on a free
// loopback port with its socket in that directory. initdb refuses to run as root, so as
// root the cluster belongs to the unprivileged user "nobody". ESGEN_PG_BINDIR picks
// the binaries' directory explicitly. The server is a child of
// the calling process and gets SIGQUIT if that process dies, and [Server.Stop] removes
// everything it created.
//
// For tests, [Main] starts one server per test binary and [NewDatabase] gives each test
// a fresh database with esgen's migrations applied, dropped when the test ends, so tests
// run in parallel against a private or a shared server alike. Without a server to use,
// [Main] stops the test binary with one line saying how to get one. Tests on a shared
// server share its snapshot horizon: [WaitFor] polls what a commit-safe read returns,
// and a test that holds transactions open for long gets a server of its own
// ([StartPrivate]).
//
// It knows how to run and reach a server, nothing of esgen beyond applying its
// migrations: it must not know events, projections or their tables.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPostgres is returned when there is neither DATABASE_URL nor a PostgreSQL install.
var ErrNoPostgres = errors.New("no PostgreSQL found: set DATABASE_URL=postgres://user@host:5432/db, or install PostgreSQL's server binaries (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql)")

// Server is a PostgreSQL server: an external one named by DATABASE_URL, or a private
// cluster started here.
type Server struct {
	// URL connects to the server's maintenance database as a superuser (or as the
	// DATABASE_URL user).
	URL string

	private bool
	binDir  string
	dir     string // temp dir holding data/ and the socket
	port    int
	cred    *syscall.Credential
	logPath string

	mu  sync.Mutex
	cmd *exec.Cmd
	// exited is closed when the current postgres process ends.
	exited chan struct{}
}

// Options tune a private cluster.
type Options struct {
	// Durable keeps fsync and synchronous commit on. Off by default: a throw-away
	// cluster trades crash safety of the OS for speed (a crash of postgres itself is
	// still recovered from WAL).
	Durable bool
	// Settings are extra postgres -c settings.
	Settings map[string]string
}

// Start returns the server named by DATABASE_URL, or starts a private cluster.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return External(ctx, u)
	}
	return StartPrivate(ctx, opts)
}

// External checks that the server at connURL answers and returns it.
func External(ctx context.Context, connURL string) (*Server, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		return nil, fmt.Errorf("pgtest: connect to DATABASE_URL: %w", err)
	}
	defer conn.Close(context.Background())
	return &Server{URL: connURL}, nil
}

// Private reports whether the server was started here (and can be restarted).
func (s *Server) Private() bool { return s.private }

// BinDir finds the directory with PostgreSQL's server binaries: ESGEN_PG_BINDIR when
// set (and then only there), else PATH, else /usr/lib/postgresql/*/bin (newest first).
func BinDir() (string, error) {
	if dir := os.Getenv("ESGEN_PG_BINDIR"); dir != "" {
		if exists(filepath.Join(dir, "initdb")) && exists(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
		return "", fmt.Errorf("ESGEN_PG_BINDIR=%s has no initdb and postgres: %w", dir, ErrNoPostgres)
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if exists(filepath.Join(dir, "initdb")) && exists(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	dirs2, _ := filepath.Glob("/usr/local/pgsql*/bin")
	dirs = append(dirs, dirs2...)
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if exists(filepath.Join(d, "initdb")) && exists(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", ErrNoPostgres
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Bin returns the path of a PostgreSQL client or server program (psql, pg_dump, …):
// from PATH, or beside the server binaries.
func Bin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dir, err := BinDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	if !exists(p) {
		return "", fmt.Errorf("pgtest: %s not found in PATH or %s", name, dir)
	}
	return p, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// StartPrivate starts a throw-away cluster, whatever DATABASE_URL says.
func StartPrivate(ctx context.Context, opts Options) (*Server, error) {
	binDir, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "esgen-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: temp dir: %w", err)
	}
	s := &Server{private: true, binDir: binDir, dir: dir, logPath: filepath.Join(dir, "postgres.log")}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			return nil, fmt.Errorf("pgtest: running as root, initdb needs an unprivileged user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, fmt.Errorf("pgtest: chown %s: %w", dir, err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
		"-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	initdb.Dir = dir
	initdb.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": dir,
		"max_connections":         "300",
		"shared_buffers":          "256MB",
		"max_wal_size":            "2GB",
		"log_min_messages":        "warning",
	}
	if !opts.Durable {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	var conf strings.Builder
	for k, v := range settings {
		fmt.Fprintf(&conf, "%s = '%s'\n", k, strings.ReplaceAll(v, "'", "''"))
	}
	if err := appendFile(filepath.Join(data, "postgresql.conf"), conf.String()); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		s.port, err = freePort()
		if err != nil {
			return nil, err
		}
		err = s.startProcess(ctx)
		if err == nil || attempt == 4 {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
	ok = true
	return s, nil
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("pgtest: write %s: %w", path, err)
	}
	return f.Close()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startProcess runs postgres as a child and waits until it accepts connections.
func (s *Server) startProcess(ctx context.Context) error {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: open log: %w", err)
	}
	if s.cred != nil {
		_ = os.Chown(s.logPath, int(s.cred.Uid), int(s.cred.Gid))
	}
	cmd := exec.Command(filepath.Join(s.binDir, "postgres"), "-D", filepath.Join(s.dir, "data"), "-p", strconv.Itoa(s.port))
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: s.cred,
		Pdeathsig:  syscall.SIGQUIT, // never outlive the process that started it
		Setpgid:    true,            // a Ctrl+C at the terminal reaches the parent only
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=2", s.port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("pgtest: postgres exited during start-up; its log:\n%s", tail(s.logPath))
		default:
		}
		conn, err := pgx.Connect(ctx, url)
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			_ = cmd.Process.Signal(syscall.SIGQUIT)
			<-exited
			return fmt.Errorf("pgtest: postgres did not accept connections: %w; its log:\n%s", err, tail(s.logPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// stopProcess shuts postgres down in fast mode (clients are disconnected, work is
// rolled back, the shutdown checkpoint is written) and waits for it.
func (s *Server) stopProcess(sig syscall.Signal) error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return errors.New("pgtest: postgres did not stop within 30s; killed")
	}
}

// Restart stops the private server in fast mode and starts it again on the same port,
// like pg_ctl restart -m fast: every connection is cut. Only for private servers.
func (s *Server) Restart(ctx context.Context) error {
	if !s.private {
		return errors.New("pgtest: cannot restart a server given by DATABASE_URL")
	}
	if err := s.stopProcess(syscall.SIGINT); err != nil {
		return err
	}
	return s.startProcess(ctx)
}

// Kill stops the private server abruptly (SIGQUIT: immediate shutdown, crash recovery
// at the next start), leaving its files for a Restart.
func (s *Server) Kill() error {
	if !s.private {
		return errors.New("pgtest: cannot kill a server given by DATABASE_URL")
	}
	return s.stopProcess(syscall.SIGQUIT)
}

// Stop shuts a private server down and removes its files. For an external server it
// does nothing.
func (s *Server) Stop() error {
	if !s.private {
		return nil
	}
	err := s.stopProcess(syscall.SIGINT)
	if rmErr := os.RemoveAll(s.dir); rmErr != nil && err == nil {
		err = fmt.Errorf("pgtest: remove %s: %w", s.dir, rmErr)
	}
	return err
}

// Dir is the private cluster's temporary directory ("" for an external server).
func (s *Server) Dir() string { return s.dir }

// DatabaseURL returns the server's URL with another database name.
func (s *Server) DatabaseURL(name string) string {
	u, err := url.Parse(s.URL)
	if err != nil {
		return s.URL
	}
	u.Path = "/" + name
	return u.String()
}

// CreateDatabase creates a database and returns its URL.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		return "", fmt.Errorf("pgtest: connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return s.DatabaseURL(name), nil
}

// DropDatabase drops a database, disconnecting its clients.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		return fmt.Errorf("pgtest: connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgtest: drop database %s: %w", name, err)
	}
	return nil
}
