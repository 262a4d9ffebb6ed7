package examples_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/esgen-dev/esgen/eventstore"
)

// TestReadmeUseItInYourModule runs the commands of the README's "Use it in your
// module" as written, in a new folder: go mod init, esgen as a tool of the module,
// esgen init, go generate, esgen migrate, go build, two projector processes and
// esgen status. esgen is not published, so the test points the module at this
// checkout with a replace (the use-checkout action) and lets the go command fall back
// to it when the module proxy does not know esgen.
func TestReadmeUseItInYourModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module and runs its programs; skipped with -short")
	}
	t.Parallel()
	steps, err := parseReadmeSection(filepath.Join("..", "README.md"), "Use it in your module")
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	const accounts = 12
	r := runSteps(t, t.TempDir(), steps, "", map[string]check{
		"use-checkout": func(ctx context.Context, r *runner) error {
			return r.command(ctx, "go", "mod", "edit", "-replace", "github.com/esgen-dev/esgen="+root)
		},
		"fill-in": fillInModule,
		"append": func(ctx context.Context, r *runner) error {
			for i := range accounts {
				id := fmt.Sprintf("acct-%02d", i)
				if _, err := eventstore.Append(ctx, r.pool, "Account", id, eventstore.NoStream,
					eventstore.EventData{Type: "AccountOpened", Payload: []byte(`{"owner":"ann","currency":"EUR"}`)},
					eventstore.EventData{Type: "MoneyDeposited", Payload: []byte(`{"amount":10}`)}); err != nil {
					return err
				}
			}
			return nil
		},
		"caught-up": func(ctx context.Context, r *runner) error {
			n, err := r.count(ctx, `SELECT count(*) FROM balances WHERE version = 2`)
			if err != nil || n != accounts {
				return fmt.Errorf("%d accounts at version 2 in the read model (%v), want %d", n, err, accounts)
			}
			return nil
		},
		"status-shows": func(ctx context.Context, r *runner) error {
			out := r.lastOutput()
			for _, want := range []string{"projection balances: 2 partition(s)", ", lag 0\n", "  0/2 ", "  1/2 "} {
				if !strings.Contains(out, want) {
					return fatalf("esgen status does not show %q:\n%s", want, out)
				}
			}
			return nil
		},
	}, "GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local", "GOPROXY="+proxyThenOff())
	if t.Failed() {
		return
	}
	for _, p := range []string{"p0", "p1"} {
		if len(findLogs(r.logOf(p), "partition stopped", "projection", "balances")) != 1 {
			t.Errorf("%s does not log that its partition stopped:\n%s", p, r.logOf(p))
		}
	}
}

// fillInModule does what the README asks of the reader after go generate: each
// balances handler records the account's version in the starter table of
// sql/migrations/100_balances.sql through the stub's queue q, Reset truncates it, and
// the errors import goes.
func fillInModule(ctx context.Context, r *runner) error {
	file := filepath.Join(r.dir, "projections", "balances", "handlers.go")
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	src := string(b)
	for _, ev := range []string{"AccountOpened", "MoneyDeposited", "MoneyWithdrawn"} {
		stub := regexp.MustCompile(fmt.Sprintf(`(?m)^\t_ = q //.*\n\treturn errors\.New\("balances: On%s not implemented"\)$`, ev))
		if !stub.MatchString(src) {
			return fmt.Errorf("handlers.go has no stub for %s that queues through q:\n%s", ev, src)
		}
		src = stub.ReplaceAllLiteralString(src, "\treturn record(ctx, q, env)")
	}
	reset := `return errors.New("balances: Reset not implemented")`
	if !strings.Contains(src, reset) {
		return fmt.Errorf("handlers.go has no Reset stub:\n%s", src)
	}
	src = strings.Replace(src, reset, "_, err := tx.Exec(ctx, `TRUNCATE balances`)\n\treturn err", 1)
	src = strings.Replace(src, "\t\"errors\"\n", "", 1) + `
// record notes the account's version in the read model, queued on q.
func record(ctx context.Context, q projection.DBTXQueue, env *eventstore.Event) error {
	_, err := q.Exec(ctx, "INSERT INTO balances (aggregate_id, version) VALUES ($1, $2) "+
		"ON CONFLICT (aggregate_id) DO UPDATE SET version = excluded.version", env.AggregateID, env.AggregateVersion)
	return err
}
`
	return os.WriteFile(file, []byte(src), 0o644)
}

// command runs a command in the runner's folder with its environment.
func (r *runner) command(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = r.dir, r.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// proxyThenOff is the configured module proxies (not direct, which would ask the
// repository's host), then "off" after any error, so that a module the proxy does
// not know resolves to its replace.
func proxyThenOff() string {
	out, _ := exec.Command("go", "env", "GOPROXY").Output()
	var list []string
	for _, p := range strings.FieldsFunc(strings.TrimSpace(string(out)), func(r rune) bool { return r == ',' || r == '|' }) {
		if p != "direct" && p != "off" {
			list = append(list, p)
		}
	}
	return strings.Join(append(list, "off"), "|")
}
