package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// StartStandby starts a hot standby of the private server s: a base backup streamed
// from it (pg_basebackup -R), run as a second private server that replays s's WAL and
// accepts read-only connections. Stop it with Stop.
func (s *Server) StartStandby(ctx context.Context) (*Server, error) {
	if !s.private {
		return nil, errors.New("pgtest: a standby needs a private primary")
	}
	dir, err := os.MkdirTemp("", "esgen-pg-standby-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: temp dir: %w", err)
	}
	sb := &Server{private: true, binDir: s.binDir, dir: dir, cred: s.cred, logPath: filepath.Join(dir, "postgres.log")}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	if sb.cred != nil {
		if err := os.Chown(dir, int(sb.cred.Uid), int(sb.cred.Gid)); err != nil {
			return nil, fmt.Errorf("pgtest: chown %s: %w", dir, err)
		}
	}
	backup := exec.CommandContext(ctx, filepath.Join(s.binDir, "pg_basebackup"),
		"-D", filepath.Join(dir, "data"), "-R", "-X", "stream", "-c", "fast", "--no-sync",
		"-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "-U", "postgres")
	backup.SysProcAttr = &syscall.SysProcAttr{Credential: sb.cred}
	backup.Dir = dir
	if out, err := backup.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: pg_basebackup: %w\n%s", err, out)
	}
	if err := appendFile(filepath.Join(dir, "data", "postgresql.conf"), fmt.Sprintf("unix_socket_directories = '%s'\nhot_standby = on\n", dir)); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		sb.port, err = freePort()
		if err != nil {
			return nil, err
		}
		err = sb.startProcess(ctx)
		if err == nil || attempt == 4 {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	sb.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", sb.port)
	ok = true
	return sb, nil
}

// DatabaseName is the database a connection URL names.
func DatabaseName(connURL string) string {
	u, err := url.Parse(connURL)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}
