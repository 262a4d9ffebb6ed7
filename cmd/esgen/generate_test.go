package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, run func(context.Context, []string, *bytes.Buffer, *bytes.Buffer) error, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func generateCmd(ctx context.Context, args []string, stdout, stderr *bytes.Buffer) error {
	return runGenerate(ctx, args, stdout, stderr)
}

func initCmd(ctx context.Context, args []string, stdout, stderr *bytes.Buffer) error {
	return runInit(ctx, args, stdout, stderr)
}

func TestGenerateCommand(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := runCmd(t, initCmd, "-C", dir, "-module", "example.com/bank"); err != nil {
		t.Fatalf("init: %v", err)
	}
	stdout, stderr, err := runCmd(t, generateCmd, "-C", dir)
	if err != nil {
		t.Fatalf("generate: %v\n%s", err, stderr)
	}
	for _, want := range []string{
		"created   generated/events/events.go",
		"created   generated/projections/balances/projection.go",
		"created   cmd/balances-projector/main.go",
		"created   projections/balances/handlers.go",
		"created   sql/migrations/001_event_store.sql",
	} {
		if !strings.Contains(stdout, want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	main := readFile(t, filepath.Join(dir, "cmd", "balances-projector", "main.go"))
	if !strings.Contains(main, `"example.com/bank/projections/balances"`) {
		t.Errorf("projector main does not import the module's handlers:\n%s", main)
	}

	stdout, _, err = runCmd(t, generateCmd, "-C", dir, "-f", "esgen.yaml")
	if err != nil {
		t.Fatalf("second generate: %v", err)
	}
	if strings.Contains(stdout, "created") || strings.Contains(stdout, "updated") || !strings.Contains(stdout, "unchanged generated/events/events.go") {
		t.Errorf("second run reported changes:\n%s", stdout)
	}
}

func TestGenerateCommandWarnsAboutDroppedHandlers(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := runCmd(t, initCmd, "-C", dir, "-module", "example.com/bank"); err != nil {
		t.Fatalf("init: %v", err)
	}
	if _, _, err := runCmd(t, generateCmd, "-C", dir); err != nil {
		t.Fatalf("generate: %v", err)
	}
	spec := readFile(t, filepath.Join(dir, "esgen.yaml"))
	trimmed := strings.Replace(spec, ", Account.MoneyWithdrawn]", "]", 1)
	if trimmed == spec {
		t.Fatal("the starter spec no longer lists Account.MoneyWithdrawn last")
	}
	writeFile(t, filepath.Join(dir, "esgen.yaml"), trimmed)
	stdout, stderr, err := runCmd(t, generateCmd, "-C", dir)
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	if !strings.Contains(stdout, "updated   generated/projections/balances/projection.go\n") || !strings.Contains(stdout, "kept      projections/balances/handlers.go\n") {
		t.Errorf("stdout:\n%s", stdout)
	}
	if !strings.HasPrefix(stderr, "warning: projections/balances/handlers.go: method Handlers.OnMoneyWithdrawn ") {
		t.Errorf("stderr = %q, want a warning naming the file and OnMoneyWithdrawn", stderr)
	}
}

func TestGenerateCommandReportsEveryMistake(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "go.mod"), "module example.com/bad\n")
	writeFile(t, filepath.Join(dir, "spec.yaml"), `version: 1
aggregates:
  Account:
    events:
      AccountOpened: {fields: {owner: int128}}
projections:
  balances:
    handles: [Account.AccountClosed]
`)
	stdout, stderr, err := runCmd(t, generateCmd, "-C", dir, "-f", "spec.yaml")
	if err == nil {
		t.Fatal("generate accepted a bad spec")
	}
	if err.Error() != "2 mistakes in spec.yaml; nothing written" {
		t.Errorf("error = %q", err)
	}
	wantErr := `spec.yaml:5:39: aggregates.Account.events.AccountOpened.fields.owner: unsupported type "int128" (supported: string, bool, int32, int64, float64, time, uuid, bytes, json, []T, T?)
spec.yaml:8:15: projections.balances.handles[0]: unknown event "Account.AccountClosed": no aggregate declares an event AccountClosed
`
	if stderr != wantErr {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, wantErr)
	}
	if stdout != "" {
		t.Errorf("stdout = %q, want nothing", stdout)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("a failing generate left %d entries, want go.mod and spec.yaml", len(entries))
	}
}

func TestGenerateCommandRejectsArguments(t *testing.T) {
	_, _, err := runCmd(t, generateCmd, "extra")
	var ue usageError
	if err == nil || !errors.As(err, &ue) {
		t.Errorf("generate extra: %v, want a usage error", err)
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// With sqlc: true, generate runs sqlc after writing its files; a module without sqlc
// as a tool is told how to add it, and --no-sqlc skips the run.
func TestGenerateRunsSqlc(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	dir := t.TempDir()
	if _, _, err := runCmd(t, initCmd, "-C", dir, "-module", "example.com/bank"); err != nil {
		t.Fatalf("init: %v", err)
	}
	spec := readFile(t, filepath.Join(dir, "esgen.yaml"))
	writeFile(t, filepath.Join(dir, "esgen.yaml"), strings.Replace(spec, "# sqlc: true", "sqlc: true", 1))
	_, _, err := runCmd(t, generateCmd, "-C", dir)
	if err == nil || !strings.Contains(err.Error(), "sqlc: true needs sqlc as a tool of this module; add it with: go get -tool github.com/sqlc-dev/sqlc/cmd/sqlc@v1.31.1") {
		t.Fatalf("generate without sqlc as a tool: %v", err)
	}
	for _, f := range []string{"sqlc.yaml", "sql/queries/balances.sql", "sql/migrations/100_balances.sql"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s was not written before sqlc ran: %v", f, err)
		}
	}
	stdout, _, err := runCmd(t, generateCmd, "-C", dir, "--no-sqlc")
	if err != nil || strings.Contains(stdout, "sqlc ") {
		t.Fatalf("generate --no-sqlc: %v\n%s", err, stdout)
	}
}
