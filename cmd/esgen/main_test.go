package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/esgen-dev/esgen/internal/pgtest"
)

// TestMain gives the package's tests one PostgreSQL (DATABASE_URL or a throw-away
// cluster, started on first use through pgtest). Tests of every command share it.
// Afterwards it removes the esgen binary the tests built.
func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if builtDir != "" {
		_ = os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	builtDir  string
	builtExe  string
	buildErr  error
)

// esgenBinary builds cmd/esgen once per test run and returns its path. The binary and
// its folder are readable by every user, so tests may run it as another user.
func esgenBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "esgen-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtDir = dir
		_ = os.Chmod(dir, 0o755)
		builtExe = filepath.Join(dir, "esgen")
		out, err := exec.Command("go", "build", "-o", builtExe, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			builtExe = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("go build ./cmd/esgen: %v\n%s", buildErr, builtExe)
	}
	return builtExe
}

func TestUnknownCommandAndUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"frobnicate"}, &stdout, &stderr); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), `unknown command "frobnicate"`) || !strings.Contains(stderr.String(), "generate") {
		t.Fatalf("stderr = %q", stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage: esgen <command>") {
		t.Fatalf("no arguments: code %d, stderr %q", code, stderr.String())
	}
}
